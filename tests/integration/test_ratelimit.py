"""Global rate limits on real Redis (GCRA reservations shared by processes),
and real workers pacing sends to the fake Twilio without holding a process."""

from __future__ import annotations

import multiprocessing
import time
from pathlib import Path
from typing import Any

import pytest
import redis as redis_lib

from shared.core.config import parse_rate
from shared.outbound.ratelimit import Limit, RateLimiter
from tests.fakes import FakeTwilio
from tests.helpers import wait_for
from tests.integration.processes import WorkerProcess


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


def test_schedule_spaces_a_backlog_one_interval_apart(redis_client: redis_lib.Redis) -> None:
    limiter = RateLimiter(redis_client)
    limit = Limit("clinicq:rl:test:a", 20, 1.0, burst=3)
    delays = [limiter.schedule([limit]) for _ in range(40)]
    assert delays[0] < 0.01
    gaps = [b - a for a, b in zip(delays, delays[1:], strict=False)]
    # Pacing ignores the burst: 50 ms apart, whatever the backlog.
    assert all(abs(g - 0.05) < 0.01 for g in gaps), gaps
    assert 1.9 < delays[-1] < 2.0


def test_burst_admits_that_many_at_once(redis_client: redis_lib.Redis) -> None:
    limiter = RateLimiter(redis_client)
    limit = Limit("clinicq:rl:test:burst", 1, 1.0, burst=3)
    assert [limiter.admit([limit])[0] for _ in range(5)] == [True, True, True, False, False]


def test_late_tasks_cannot_burst_past_admission(redis_client: redis_lib.Redis) -> None:
    """Scheduled slots whose countdowns all fire late, at once: admission lets
    only `burst` through."""
    limiter = RateLimiter(redis_client)
    limit = Limit("clinicq:rl:test:late", 10, 1.0, burst=2)
    delays = [limiter.schedule([limit]) for _ in range(10)]
    assert max(delays) < 1.0
    time.sleep(1.0)  # every countdown has passed: all ten wake up together
    assert [limiter.admit([limit])[0] for _ in range(10)].count(True) == 2


def test_pair_limit_denial_does_not_consume_the_sender(redis_client: redis_lib.Redis) -> None:
    limiter = RateLimiter(redis_client)
    sender = Limit("clinicq:rl:test:sender", 2, 1.0, burst=2)
    pair = Limit("clinicq:rl:test:pair:x", 1, 6.0)
    assert limiter.admit([sender, pair])[0]
    granted, wait = limiter.admit([sender, pair])  # same recipient within 6 s
    assert not granted and 5.9 < wait <= 6.0
    other = Limit("clinicq:rl:test:pair:y", 1, 6.0)
    assert limiter.admit([sender, other])[0]  # the sender still had its 2nd slot
    # Scheduling honours the slower of the two: the pair's 6 s.
    fast_sender = Limit("clinicq:rl:test:sender2", 100, 1.0)
    pair_z = Limit("clinicq:rl:test:pair:z", 1, 6.0)
    first = limiter.schedule([fast_sender, pair_z])
    second = limiter.schedule([fast_sender, pair_z])
    assert first < 0.01 and 5.9 < second < 6.1


def _hammer(url: str, n: int, out: Any) -> None:
    limiter = RateLimiter(redis_lib.Redis.from_url(url))
    limit = Limit("clinicq:rl:test:procs", 10, 1.0, burst=1)
    granted = []
    deadline = time.time() + 2.0
    while time.time() < deadline and len(granted) < n:
        if limiter.admit([limit])[0]:
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
    from shared.core.db import session_scope
    from shared.outbound.create import OutboundRequest, create_outbound_message, enqueue_send
    from tests.integration.test_delivery import message, new_contact

    with FakeTwilio() as fake:
        env = {**fake.env(), "RATE_LIMIT_SMS": "4/second", "RATE_LIMIT_SMS_BURST": "1",
               "RATE_LIMIT_MAX_COUNTDOWN_SECONDS": "1"}
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


def test_schedule_and_admit_is_schedule_then_admit_in_one_call(redis_client: redis_lib.Redis) -> None:
    """The one-round-trip form used by the send path grants, refuses and
    reserves exactly as `schedule` followed (when the slot is now) by `admit`,
    on the same keys: compared call by call on two independent senders."""

    class Counting(redis_lib.Redis):
        calls = 0

        def execute_command(self, *args: Any, **options: Any) -> Any:
            Counting.calls += 1
            return super().execute_command(*args, **options)

    client = Counting(connection_pool=redis_client.connection_pool)
    limiter = RateLimiter(client)
    slack = 0.005
    # Loads the script into Redis (a first EVALSHA answers NOSCRIPT).
    limiter.schedule_and_admit([Limit("clinicq:rl:test:warm-up", 10, 1.0)], slack)
    one = [Limit("clinicq:rl:test:both-a", 10, 1.0, burst=2)]
    two = [Limit("clinicq:rl:test:pair-a", 10, 1.0, burst=2),
           Limit("clinicq:rl:test:pair-a:to", 1, 6.0, burst=1)]
    for limits in (one, two):
        reference = [Limit(lim.key.replace(":test:", ":test-ref:"), lim.count, lim.period, lim.burst)
                     for lim in limits]
        got, expected = [], []
        for _ in range(4):
            before = Counting.calls
            delay, admitted, _wait = limiter.schedule_and_admit(limits, slack)
            assert Counting.calls - before == 1  # one round trip (EVALSHA)
            got.append((round(delay, 1), admitted))
            ref_delay = limiter.schedule(reference)
            ref_admitted = limiter.admit(reference)[0] if ref_delay <= slack else False
            expected.append((round(ref_delay, 1), ref_admitted))
        assert got == expected
        # The first is sent at once; the next reserve later slots (not admitted).
        assert got[0] == (0.0, True) and not any(a for _, a in got[1:])
        for lim, ref in zip(limits, reference, strict=True):
            for suffix in (":sched", ""):
                mine = float(redis_client.get(lim.key + suffix) or 0)
                theirs = float(redis_client.get(ref.key + suffix) or 0)
                assert abs(mine - theirs) < 0.05, (lim.key, suffix)


def test_a_come_back_is_fetched_ahead_of_a_backlog_of_first_runs(
    tmp_path: Path, redis_client: redis_lib.Redis
) -> None:
    """A send coming back at its reserved slot must not wait behind every
    first run queued after it (its slot would pass unused): first runs wait
    in the queue's lower-priority list, come-backs in the plain one."""
    from shared.core.db import session_scope
    from shared.core.taskqueue import queue_lists, send_task
    from shared.outbound.create import (
        SEND_TASKS,
        OutboundRequest,
        create_outbound_message,
        enqueue_send,
    )
    from tests.integration.test_delivery import message, new_contact

    with FakeTwilio() as fake:
        contact = new_contact()
        with session_scope() as s:
            backlog = [create_outbound_message(s, OutboundRequest(
                channel="sms", to_address="+5511987654321", contact_id=contact,
                text=f"first run {i}")).message_id for i in range(30)]
            late = create_outbound_message(s, OutboundRequest(
                channel="sms", to_address="+5511987654321", contact_id=contact,
                text="come-back")).message_id
        for mid in backlog:
            enqueue_send(mid, "sms")
        # Published as a come-back is (workers/tasks/send.py): after the
        # backlog, at the default priority, its slot already reserved.
        send_task(SEND_TASKS["sms"], [str(late)],
                  kwargs={"not_before": time.time(), "reserved": True})
        plain, first_runs = queue_lists("sms")[0], queue_lists("sms")[1]
        assert (redis_client.llen(plain), redis_client.llen(first_runs)) == (1, 30)

        worker = WorkerProcess("sms", 1, tmp_path / "w.log",
                               {**fake.env(), "RATE_LIMIT_SMS": "1000/second"})
        try:
            worker.wait_ready()
            wait_for(lambda: all(message(m).status == "sent" for m in [*backlog, late]),
                     timeout=60)
        finally:
            worker.stop()
        bodies = [r.form["Body"] for r in sorted(fake.sends(), key=lambda r: r.at)]
    assert len(bodies) == 31
    assert bodies[0] == "come-back", bodies[:3]
