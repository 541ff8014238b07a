"""Console pages under load: does a page's cost follow what it shows, or the
history behind it?

Two states of one database of its own (created and dropped here), seeded by
bench/console_seed.py with the same density per day:
  small — 10,000 messages / 1,000 appointments (10 days of history);
  large — 1,000,000 messages / 100,000 appointments (1,000 days).
(`python -m bench console --large-messages N` scales the large state down
when time is short; the run prints what it used.)

The console runs under its real gunicorn config; 10 concurrent signed-in users
request each page in turn. The same server's static CSS is the baseline.
Printed: p50/p95 per page in both states, p95(large)/p95(small) (goal ≤ 1.5×)
and p95(large)/p95(static) (goal ≤ 10×), and EXPLAIN (ANALYZE) of every
report query over the large state.
"""

from __future__ import annotations

import argparse
import http.cookiejar
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

USERS = 10
REQUESTS_PER_PAGE = 100
ROOT = Path(__file__).resolve().parent.parent
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _opener() -> urllib.request.OpenerDirector:
    return urllib.request.build_opener(
        urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))


def _login(base: str, email: str, password: str) -> urllib.request.OpenerDirector:
    opener = _opener()
    html = opener.open(f"{base}/login", timeout=30).read().decode()
    token = _CSRF.search(html)
    assert token
    body = urllib.parse.urlencode({"email": email, "password": password,
                                   "csrf_token": token.group(1)}).encode()
    opener.open(f"{base}/login", data=body, timeout=30).read()
    return opener


def _measure(users: list[Any], base: str, path: str) -> list[float]:
    def one(i: int) -> float:
        opener = users[i % len(users)]
        started = time.perf_counter()
        with opener.open(base + path, timeout=60) as response:
            response.read()
            assert response.status == 200, (path, response.status)
        return time.perf_counter() - started

    with ThreadPoolExecutor(USERS) as pool:
        list(pool.map(one, range(USERS)))  # warm-up
        return list(pool.map(one, range(REQUESTS_PER_PAGE)))


def _p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def _pages(engine: Any) -> dict[str, str]:
    from sqlalchemy import text

    with engine.connect() as conn:
        conversation = conn.execute(text(
            "SELECT id FROM conversations ORDER BY last_message_at DESC LIMIT 1")).scalar()
        phone = conn.execute(text(
            "SELECT value FROM contact_identities WHERE kind = 'phone' ORDER BY id LIMIT 1"
        )).scalar()
    national = f"({phone[3:5]}) {phone[5:10]}-{phone[10:]}"
    return {
        "static css": "/static/console.css",
        "board today": "/board",
        "board tomorrow": "/board?day=tomorrow",
        "conversations": "/conversations",
        "conv sms+unread": "/conversations?channel=sms&unread=1",
        "conv urgent": "/conversations?urgency=urgent",
        "search phone": "/conversations?q=" + urllib.parse.quote(national),
        "search name": "/conversations?q=Paciente+12",
        "conversation": f"/conversations/{conversation}",
        "attention": "/attention",
        "reports 7d": "/reports",
        "reports weeks": "/reports?unit=week",
    }


def _run_state(label: str, engine: Any, base: str, email: str, password: str,
               results: dict[str, dict[str, list[float]]]) -> None:
    users = [_login(base, email, password) for _ in range(USERS)]
    for name, path in _pages(engine).items():
        results.setdefault(name, {})[label] = _measure(users, base, path)
        print(f"  {label:5} {name:16} p50 {_p(results[name][label], .5):7.1f} ms  "
              f"p95 {_p(results[name][label], .95):7.1f} ms", flush=True)


def _explain(engine: Any, settings: Any) -> None:
    from datetime import timedelta

    from sqlalchemy import text

    from shared.console.reports import REPORT_QUERIES, window

    today = datetime.now(UTC).astimezone(settings.timezone).date()
    params = window(None, None, "day", today).params(settings)
    with engine.connect() as conn:
        for name, sql in REPORT_QUERIES.items():
            plan = conn.execute(text("EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY ON) "
                                     + sql.text), params).scalars().all()
            print(f"\n-- EXPLAIN report query {name!r} (last 7 days)")
            print("\n".join(plan))
        from shared.console.board import BOARD_SQL
        start = datetime.now(UTC)
        plan = conn.execute(text("EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY ON) "
                                 + BOARD_SQL.text),
                            {"start": start, "end": start + timedelta(days=1),
                             "professional": None, "location": None, "limit": 500}
                            ).scalars().all()
        print("\n-- EXPLAIN board (next 24 h)")
        print("\n".join(plan))


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench console")
    parser.add_argument("--large-messages", type=int, default=1_000_000)
    args = parser.parse_args(sys.argv[2:] if len(sys.argv) > 2 else [])
    large_messages = args.large_messages
    large_appointments = large_messages // 10

    from tests.infra import start_infra, stop_infra

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    cleanups: list[Any] = []
    try:
        infra = start_infra()
        cleanups.append(lambda: stop_infra(infra))
        env = {
            "DATABASE_URL": infra.database_url, "REDIS_URL": infra.redis_url,
            "SECRET_KEY": os.environ.get("SECRET_KEY") or secrets.token_urlsafe(32),
            "WEBHOOK_SIGNING_SECRETS": "whsec_" + secrets.token_hex(16),
            "CLINICQ_DEV_MODE": "true", "LOG_LEVEL": "WARNING",
            "CONSOLE_LOGIN_ATTEMPTS_PER_MINUTE": "10000",
        }
        os.environ.update(env)
        from shared.core.config import get_settings

        get_settings.cache_clear()
        settings = get_settings()
        from bench.console_seed import seed
        from shared.console.accounts import create_user
        from shared.core.db import dispose_engines, get_engine, session_scope
        from shared.runtime.migrate import upgrade

        dispose_engines()
        upgrade(infra.database_url)
        engine = get_engine()
        email, password = "bench@clinica.com.br", secrets.token_urlsafe(16)
        port = _free_port()
        server = subprocess.Popen(  # noqa: S603 - our own gunicorn, fixed arguments
            [sys.executable, "-m", "gunicorn", "-c", str(ROOT / "console" / "gunicorn_conf.py"),
             "--bind", f"127.0.0.1:{port}", "console.app:wsgi()"],
            cwd=ROOT, env={**os.environ, **env, "PYTHONPATH": str(ROOT)},
        )
        cleanups.append(lambda: (server.terminate(), server.wait(10)))
        base = f"http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                urllib.request.urlopen(f"{base}/healthz", timeout=1).read()  # noqa: S310
                break
            except OSError:
                time.sleep(0.2)
        print(f"console bench: {os.cpu_count()} cores; {USERS} concurrent users; "
              f"{REQUESTS_PER_PAGE} requests per page; PostgreSQL {infra.postgres_origin}",
              flush=True)
        results: dict[str, dict[str, list[float]]] = {}
        states = (("small", 10_000, 1_000, 10.0),
                  ("large", large_messages, large_appointments, 10.0 * large_messages / 10_000))
        for label, messages, appointments, days in states:
            from sqlalchemy import text

            from shared.core.models import Base

            with engine.begin() as conn:
                tables = ", ".join(t.name for t in Base.metadata.sorted_tables)
                conn.execute(text(f"TRUNCATE {tables} CASCADE"))
            started = time.perf_counter()
            with engine.begin() as conn:
                seed(conn, messages, appointments, days, datetime.now(UTC),
                     contacts=max(1_000, appointments))
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.execute(text("VACUUM ANALYZE"))
            with session_scope() as s:
                create_user(s, email, password, "admin")
            print(f"{label}: {messages:,} messages / {appointments:,} appointments over "
                  f"{days:,.0f} days seeded in {time.perf_counter() - started:.1f} s", flush=True)
            _run_state(label, engine, base, email, password, results)
            if label == "large":
                _explain(engine, settings)

        static = _p(results["static css"]["large"], .95)
        print("\npage              p95 small  p95 large  large/small (≤1.5)  large/static (≤10)")
        for name, by_state in results.items():
            small, large = _p(by_state["small"], .95), _p(by_state["large"], .95)
            ok1 = "ok" if large <= 1.5 * small else "MISSED"
            ok2 = "ok" if large <= 10 * static else "MISSED"
            print(f"{name:16} {small:8.1f} ms {large:8.1f} ms  {large / small:6.2f}× {ok1:6}  "
                  f"{large / static:7.1f}× {ok2}")
    finally:
        for cleanup in reversed(cleanups):
            try:
                cleanup()
            except Exception as exc:  # noqa: BLE001 - keep cleaning up
                print(f"cleanup: {exc!r}", file=sys.stderr)
