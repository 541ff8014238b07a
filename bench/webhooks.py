"""`python -m bench webhooks`: outbound webhook delivery latency and loss.

Measured from "the change committed" (the transaction that wrote the
outbox row returned from COMMIT) to "the receiver got it" (the local
receiver of tests/fakes/webhook_receiver.py verified the signature with the
`standardwebhooks` library and recorded the time), on loopback:

(a) baseline: the same receiver, POSTed directly from this process with a
    signed request at the same rate — what one HTTP round trip and one
    signature verification cost here;
(b) sustained: 100 events/s for 20 s (open loop: one transaction per event,
    or the events already due together when the generator is behind;
    `record_event` as the domain code calls it, 100 ordering keys), real
    `celery worker -Q webhooks` (prefork -c 4) and the real scheduler
    (its webhook sweep); p50/p95/max latency, as ratios against (a). Goal
    p95 <= 1 s;
(c) outage: the same load with the receiver down (connections refused) for
    5 s in the middle; every event must reach it (no loss), the figures are
    how long the catch-up took and how many arrived twice (at-least-once).

Infrastructure as the tests get it (tests/infra.py).
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RATE = 100  # events per second
SECONDS = 20.0
OUTAGE_AT, OUTAGE_FOR = 7.0, 5.0
KEYS = 100
WORKER_CONCURRENCY = 4
BASELINE_REQUESTS = 1000


def _start(cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log.open("wb"),
                            stderr=subprocess.STDOUT, start_new_session=True)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)
    except ProcessLookupError:
        pass
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def baseline(receiver: Any, secret: str) -> list[float]:
    """Signed POSTs straight to the receiver, paced at RATE."""
    import requests
    from standardwebhooks import Webhook

    session = requests.Session()
    latencies = []
    start = time.monotonic()
    for i in range(BASELINE_REQUESTS):
        due = start + i / RATE
        time.sleep(max(0.0, due - time.monotonic()))
        msg_id = f"evt_baseline_{i}"
        body = f'{{"id": "{msg_id}", "type": "baseline", "data": {{}}}}'
        now = datetime.now(UTC)
        headers = {"content-type": "application/json", "webhook-id": msg_id,
                   "webhook-timestamp": str(int(now.timestamp())),
                   "webhook-signature": Webhook(secret).sign(msg_id, now, body)}
        t0 = time.time()
        resp = session.post(receiver.url + "/hooks", data=body, headers=headers, timeout=5)
        assert resp.status_code == 200
        latencies.append(time.time() - t0)
    return latencies


def emit_for(seconds: float, on_tick: Any = None) -> dict[str, float]:
    """RATE events/s for `seconds`, `record_event` as the domain code calls
    it; returns event id -> commit time. An event due on time gets its own
    transaction; when the generator is behind (each commit costs a few ms of
    a shared 2-core machine), the events already due commit together in one
    transaction — so the load really is RATE/s and the bench measures
    delivery, not the generator."""
    from sqlalchemy import select

    from shared.core.db import session_scope
    from shared.core.models import WebhookEvent
    from shared.core.webhook_events import record_event

    committed: dict[str, float] = {}
    start = time.monotonic()
    n = int(seconds * RATE)
    batches = 0
    i = 0
    while i < n:
        lag = start + i / RATE - time.monotonic()
        if lag > 0:
            time.sleep(lag)
        elapsed = time.monotonic() - start
        if on_tick is not None:
            on_tick(elapsed)
        due = min(n, max(i + 1, int(elapsed * RATE) + 1))
        with session_scope() as s:
            for j in range(i, due):
                record_event(s, "contact.opted_out",
                             {"contact": {"id": f"bench-{j % KEYS}"}, "channel": "sms",
                              "source": "bench"}, ordering_key=f"contact:bench-{j % KEYS}")
            event_ids = list(s.scalars(select(WebhookEvent.id)
                                       .order_by(WebhookEvent.seq.desc()).limit(due - i)))
        now = time.time()
        for event_id in event_ids:
            committed[str(event_id)] = now
        batches += 1
        i = due
    elapsed = time.monotonic() - start
    print(f"    emitted {n} events in {elapsed:.1f} s ({n / elapsed:.0f}/s) "
          f"in {batches} transactions", flush=True)
    return committed


def first_arrivals(receiver: Any) -> tuple[dict[str, float], int]:
    firsts: dict[str, float] = {}
    duplicates = 0
    for d in receiver.accepted():
        if d.webhook_id in firsts:
            duplicates += 1
        else:
            firsts[d.webhook_id] = d.at
    return firsts, duplicates


def wait_all(receiver: Any, ids: set[str], timeout: float) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        got, _ = first_arrivals(receiver)
        if ids <= set(got):
            return time.monotonic() - start
        time.sleep(0.2)
    return -1.0


def main() -> None:
    from tests.fakes.webhook_receiver import FakeWebhookReceiver
    from tests.infra import start_infra, stop_infra

    started = time.time()
    infra = start_infra()
    tmp = Path(tempfile.mkdtemp(prefix="clinicq-bench-webhooks-"))
    env = {
        **os.environ,
        "DATABASE_URL": infra.database_url,
        "REDIS_URL": infra.redis_url,
        "SECRET_KEY": "bench-secret-key-" + secrets.token_urlsafe(24),
        "WEBHOOK_SIGNING_SECRETS": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        "PUBLIC_BASE_URL": "https://clinicq.bench",
        "CLINICQ_DEV_MODE": "true",  # the receiver is plain http on loopback
        "LOG_LEVEL": "WARNING",
        "WEBHOOK_SWEEP_SECONDS": "2",
        "WEBHOOK_SWEEP_GRACE_SECONDS": "10",
    }
    os.environ.update(env)
    receiver = FakeWebhookReceiver().start()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        from shared.core.config import get_settings
        from shared.core.db import session_scope
        from shared.core.webhook_endpoints import create_endpoint
        from shared.runtime.migrate import upgrade

        get_settings.cache_clear()
        settings = get_settings()
        upgrade(infra.database_url)
        with session_scope() as s:
            _, secret = create_endpoint(
                s, {"url": receiver.url + "/hooks", "event_types": ["*"]}, settings)
        receiver.secrets.append(secret)  # type: ignore[attr-defined]
        print(f"webhooks bench: {os.cpu_count()} cores; worker prefork -c {WORKER_CONCURRENCY}; "
              f"{RATE} events/s; postgres {infra.postgres_origin}, redis {infra.redis_origin}",
              flush=True)

        base = baseline(receiver, secret)
        b50, b95 = _pct(base, 0.5), _pct(base, 0.95)
        print(f"  (a) baseline: direct signed POST to the receiver at {RATE}/s: "
              f"p50 {b50 * 1000:.1f} ms, p95 {b95 * 1000:.1f} ms", flush=True)
        with receiver.lock:  # type: ignore[attr-defined]
            receiver.requests.clear()  # type: ignore[attr-defined]
            receiver.deliveries.clear()  # type: ignore[attr-defined]

        procs.append(_start(
            [sys.executable, "-m", "celery", "-A", "workers.app", "worker", "-Q", "webhooks",
             "-c", str(WORKER_CONCURRENCY), "-P", "prefork", "--without-gossip",
             "--without-mingle", "--without-heartbeat", "--loglevel", "WARNING",
             "-n", f"bench-{os.urandom(3).hex()}@%h"], env, tmp / "worker.log"))
        procs.append(_start([sys.executable, "-m", "scheduler"], env, tmp / "scheduler.log"))
        from workers.app import app

        deadline = time.monotonic() + 90
        while not (app.control.ping(timeout=0.5) or []):
            if time.monotonic() > deadline or procs[0].poll() is not None:
                raise SystemExit("webhooks worker did not start")

        # (b) sustained
        committed = emit_for(SECONDS)
        took = wait_all(receiver, set(committed), 300)
        firsts, dups = first_arrivals(receiver)
        lat = [firsts[i] - t for i, t in committed.items() if i in firsts]
        lost = len(set(committed) - set(firsts))  # not received within 300 s
        p50, p95, worst = _pct(lat, 0.5), _pct(lat, 0.95), max(lat)
        print(f"  (b) sustained {RATE}/s for {SECONDS:.0f} s, commit -> receiver: "
              f"p50 {p50 * 1000:.0f} ms, p95 {p95 * 1000:.0f} ms, max {worst * 1000:.0f} ms; "
              f"lost {lost}, duplicates {dups}; drained {took:.1f} s after the last commit",
              flush=True)
        print(f"      ratio vs baseline: p50 {p50 / b50:.1f}x, p95 {p95 / b95:.1f}x; "
              f"p95 goal <= 1000 ms {'OK' if p95 <= 1.0 else 'ABOVE GOAL'}", flush=True)

        # (c) outage in the middle
        with receiver.lock:  # type: ignore[attr-defined]
            receiver.requests.clear()  # type: ignore[attr-defined]
            receiver.deliveries.clear()  # type: ignore[attr-defined]
        state = {"down": False, "up": False}
        outage: dict[str, float] = {}

        def tick(elapsed: float) -> None:
            if not state["down"] and elapsed >= OUTAGE_AT:
                receiver.go_down()  # type: ignore[attr-defined]
                state["down"] = True
                outage["down"] = time.time()
            elif state["down"] and not state["up"] and elapsed >= OUTAGE_AT + OUTAGE_FOR:
                receiver.come_up()  # type: ignore[attr-defined]
                state["up"] = True
                outage["up"] = time.time()

        committed = emit_for(SECONDS, tick)
        took = wait_all(receiver, set(committed), 300)
        firsts, dups = first_arrivals(receiver)
        lost = len(set(committed) - set(firsts))
        lat = [firsts[i] - t for i, t in committed.items() if i in firsts]
        during = [i for i, t in committed.items() if outage["down"] <= t < outage["up"]]
        caught_up = max((firsts[i] for i in during if i in firsts), default=outage["up"])
        unaffected = [firsts[i] - t for i, t in committed.items()
                      if i in firsts and t < outage["down"] - 1] or [float("nan")]
        print(f"  (c) {RATE}/s for {SECONDS:.0f} s, receiver refusing connections for "
              f"{OUTAGE_FOR:.0f} s from t={OUTAGE_AT:.0f} s: {len(committed)} events, "
              f"lost {lost} ({'OK' if lost == 0 else 'EVENTS LOST'}), duplicates {dups}; "
              f"{len(during)} committed during the outage, all received "
              f"{caught_up - outage['up']:.1f} s after it ended; "
              f"p95 before the outage {_pct(unaffected, 0.95) * 1000:.0f} ms "
              f"({_pct(unaffected, 0.95) / b95:.1f}x baseline), max overall "
              f"{max(lat):.1f} s; drained {took:.1f} s after the last commit", flush=True)
        print(f"  total bench time {time.time() - started:.0f} s", flush=True)
    finally:
        for proc in procs:
            _stop(proc)
        receiver.stop()
        from shared.core.db import dispose_engines

        dispose_engines()
        stop_infra(infra)
