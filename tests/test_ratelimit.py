"""Global rate limits on real Redis (GCRA reservations shared by processes),
and real workers pacing sends to the fake Twilio without holding a process."""

from __future__ import annotations

import multiprocessing
import time
from pathlib import Path
from typing import Any

import pytest
import redis as redis_lib

from shared.config import parse_rate
from shared.ratelimit import Limit, RateLimiter
from tests.conftest import WorkerProcess, wait_for
from tests.fakes import FakeTwilio


def max_in_window(times: list[float], window: float = 1.0) -> int:
    """Most events inside any window [t, t + window) starting at an event."""
    times = sorted(times)
    best, j = 0, 0
    for i, start in enumerate(times):
        while j < len(times) and times[j] < start + window:
            j += 1
        best = max(best, j - i)
    return best


def test_parse_rate() -> None:
    assert parse_rate("200/hour") == (200, 3600.0)
    assert parse_rate("1/6second") == (1, 6.0)
    with pytest.raises(ValueError):
        parse_rate("fast")


def test_reservations_are_evenly_spaced_up_to_the_horizon(redis_client: redis_lib.Redis) -> None:
    limiter = RateLimiter(redis_client, horizon=1.0)
    limit = Limit("clinicq:rl:test:a", 20, 1.0, burst=1)
    decisions = [limiter.reserve([limit]) for _ in range(25)]
    reserved = [d.delay for d in decisions if d.reserved]
    assert 20 <= len(reserved) <= 22  # ~1 s of slots at 50 ms each
    gaps = [b - a for a, b in zip(reserved, reserved[1:], strict=False)]
    assert all(abs(g - 0.05) < 0.01 for g in gaps), gaps
    denied = [d for d in decisions if not d.reserved]
    assert denied and all(d.delay > 0 for d in denied)


def test_burst_allows_that_many_at_once(redis_client: redis_lib.Redis) -> None:
    limiter = RateLimiter(redis_client, horizon=0.0)
    limit = Limit("clinicq:rl:test:burst", 1, 1.0, burst=3)
    granted = [limiter.reserve([limit]).reserved for _ in range(5)]
    assert granted == [True, True, True, False, False]


def test_late_task_cannot_burst_past_admission(redis_client: redis_lib.Redis) -> None:
    """Scheduled slots fired late all at once: admission lets `burst` through."""
    limiter = RateLimiter(redis_client, horizon=2.0)
    limit = Limit("clinicq:rl:test:late", 10, 1.0, burst=2)
    slots = [limiter.schedule([limit]) for _ in range(10)]
    assert all(d.reserved for d in slots)
    time.sleep(1.0)  # every countdown has passed: all ten wake up together
    admitted = [limiter.admit([limit]) for _ in range(10)]
    assert admitted.count(True) == 2


def test_pair_limit_denial_does_not_consume_the_sender(redis_client: redis_lib.Redis) -> None:
    limiter = RateLimiter(redis_client, horizon=0.0)
    sender = Limit("clinicq:rl:test:sender", 2, 1.0, burst=2)
    pair = Limit("clinicq:rl:test:pair:x", 1, 6.0)
    assert limiter.reserve([sender, pair]).reserved
    assert not limiter.reserve([sender, pair]).reserved  # same recipient within 6 s
    other = Limit("clinicq:rl:test:pair:y", 1, 6.0)
    assert limiter.reserve([sender, other]).reserved  # the sender still had its 2nd slot


def _hammer(url: str, n: int, out: Any) -> None:
    limiter = RateLimiter(redis_lib.Redis.from_url(url), horizon=0.0)
    limit = Limit("clinicq:rl:test:procs", 10, 1.0, burst=1)
    granted = []
    deadline = time.time() + 2.0
    while time.time() < deadline and len(granted) < n:
        if limiter.admit([limit]):
            granted.append(time.time())
        else:
            time.sleep(0.005)
    out.put(granted)


def test_limit_is_global_across_processes(infra: Any) -> None:
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=_hammer, args=(infra.redis_url, 100, out)) for _ in range(3)]
    for p in procs:
        p.start()
    times = sorted(t for _ in procs for t in out.get(timeout=60))
    for p in procs:
        p.join(30)
    # 10/s whoever asks, however many processes ask.
    assert len(times) <= (times[-1] - times[0]) * 10 + 1 + 0.5
    assert len(times) >= 15
    assert max_in_window(times) <= 10 + 1


def test_workers_pace_sms_and_never_hold_a_process(tmp_path: Path) -> None:
    from shared.db import session_scope
    from shared.outbound import OutboundRequest, create_outbound_message, enqueue_send
    from tests.test_delivery import message, new_contact

    with FakeTwilio() as fake:
        env = {**fake.env(), "RATE_LIMIT_SMS": "4/second", "RATE_LIMIT_SMS_BURST": "1",
               "RATE_LIMIT_MAX_RESERVE_SECONDS": "1"}
        # ONE process serves both queues: if a limited SMS slept in it, the
        # email below would wait behind the whole SMS backlog.
        worker = WorkerProcess("sms,email", 1, tmp_path / "w.log", env)
        try:
            worker.wait_ready()
            contact = new_contact()
            ids = []
            with session_scope() as s:
                for i in range(12):
                    ids.append(create_outbound_message(s, OutboundRequest(
                        channel="sms", to_address="+5511987654321", contact_id=contact,
                        text=f"msg {i}")).message_id)
            for mid in ids:
                enqueue_send(mid, "sms")
            time.sleep(0.5)
            with session_scope() as s:
                email = create_outbound_message(s, OutboundRequest(
                    channel="email", to_address="a@b.c", text="oi", subject="s")).message_id
            started = time.time()
            enqueue_send(email, "email")  # no SMTP configured: outbox
            wait_for(lambda: message(email).status == "delivered", timeout=20)
            email_latency = time.time() - started
            wait_for(lambda: all(message(m).status == "sent" for m in ids), timeout=30)
        finally:
            worker.stop()
        times = [r.at for r in fake.sends()]
    assert len(times) == 12
    assert max_in_window(times) <= 4 + 1, sorted(b - a for a, b in zip(times, times[1:], strict=False))
    assert times[-1] - times[0] >= (12 - 1) / 4 - 0.3  # paced, not bunched
    assert email_latency < 1.5, f"email waited {email_latency:.2f}s behind rate-limited SMS"
