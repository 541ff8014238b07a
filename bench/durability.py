"""`python -m bench durability`: the cost of REDIS_DURABILITY on ingest.

Signed `POST /api/webhook` (bench/ingest.py's requests, load generator and
gunicorn configuration) against one ingest per mode, each with a Redis of
its own on this machine's disk (under var/, not a tmpfs), in alternating
rounds so machine noise hits every mode alike:

- `everysec`: the baseline (AOF fsynced once a second);
- `always`: that Redis runs `appendfsync always`, so each publish is on
  disk before Redis answers and ingest answers 202;
- `waitaof`: ingest sends `WAITAOF 1 0` after each publish — measured only
  where the local redis-server is >= 7.2 (otherwise printed as skipped).

Printed: each mode's throughput and p99 as a ratio of the everysec
baseline's in the same run.
"""

from __future__ import annotations

import base64
import os
import secrets
import shutil
import subprocess

import redis

from bench.ingest import (
    ROOT,
    Result,
    _free_port,
    build_requests,
    measure,
    start_gunicorn,
    stop_group,
    wait_serving,
)

ROUNDS = 6
REQUESTS = 16_000


def _redis_version() -> tuple[int, ...]:
    from shared.runtime.embedded import redis_server_binary

    out = subprocess.run([redis_server_binary(), "--version"], capture_output=True, text=True,
                         check=False).stdout
    version = next((p.split("=", 1)[1] for p in out.split() if p.startswith("v=")), "0.0")
    return tuple(int(x) for x in version.split(".")[:2])


def main() -> None:
    from shared.core.redis_durability import WAITAOF_MIN_VERSION
    from shared.runtime.embedded import start_redis, stop_process

    modes = ["everysec", "always"]
    version = _redis_version()
    if version >= WAITAOF_MIN_VERSION:
        modes.append("waitaof")
    secret = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
    base_dir = ROOT / "var" / "bench-durability"
    shutil.rmtree(base_dir, ignore_errors=True)
    servers: list[subprocess.Popen[bytes]] = []
    redises: list[subprocess.Popen[bytes]] = []
    try:
        targets = {}
        for mode in modes:
            url, proc = start_redis(
                base_dir / mode, appendonly=True,
                appendfsync="always" if mode == "always" else "everysec",
            )
            redises.append(proc)
            env = {
                **os.environ,
                # Ingest never touches PostgreSQL; the setting must merely exist.
                "DATABASE_URL": "postgresql://unused@127.0.0.1:1/unused",
                "REDIS_URL": url,
                "REDIS_DURABILITY": mode,
                "SECRET_KEY": secrets.token_urlsafe(32),
                "WEBHOOK_SIGNING_SECRETS": secret,
                "LOG_LEVEL": "WARNING",
            }
            env.pop("WEBHOOK_SECRET", None)
            port = _free_port()
            server = start_gunicorn("ingest.app:wsgi()", port, env)
            servers.append(server)
            targets[mode] = (port, server, redis.Redis.from_url(url))
        print(
            f"durability bench: {os.cpu_count()} cores, redis-server "
            f"{'.'.join(map(str, version))}, AOF under {base_dir} "
            f"({'waitaof measured' if 'waitaof' in modes else 'waitaof skipped: needs Redis >= 7.2'})"
            f", {ROUNDS} alternating rounds",
            flush=True,
        )
        for mode, (port, server, client) in targets.items():
            wait_serving(port, build_requests(port, secret, 1, f"ready-{mode}")[0])
            measure(port, build_requests(port, secret, REQUESTS, f"warm-{mode}"), server, client)
        results: dict[str, list[Result]] = {mode: [] for mode in modes}
        for r in range(ROUNDS):
            for mode, (port, server, client) in targets.items():
                reqs = build_requests(port, secret, REQUESTS, f"{mode}{r}")
                results[mode].append(measure(port, reqs, server, client))
        merged = {
            mode: Result([x for res in rs for x in res.latencies],
                         [x for res in rs for x in res.errors], sum(res.seconds for res in rs))
            for mode, rs in results.items()
        }
        baseline = merged["everysec"]
        for mode, res in merged.items():
            per_round = sorted(
                m.rps / b.rps for m, b in zip(results[mode], results["everysec"], strict=True)
            )
            print(
                f"  {mode:8s} {res.rps:8.1f} req/s  p99 {res.pct(0.99):6.2f} ms   "
                f"throughput {res.rps / baseline.rps:.2f}x, p99 "
                f"{res.pct(0.99) / baseline.pct(0.99):.2f}x of everysec "
                f"(per-round median {per_round[len(per_round) // 2]:.2f}x; "
                f"non-202={len(res.errors)})",
                flush=True,
            )
    finally:
        for proc in servers:
            stop_group(proc)
        for proc in redises:
            stop_process(proc)
        shutil.rmtree(base_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
