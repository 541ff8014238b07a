"""Failover with three `python -m scheduler` processes and two send workers
racing: every reminder's WhatsApp message either fails ("not a WhatsApp
user", 131026, from the fake Meta) or is never delivered before a short
deadline, and each row still gets exactly one SMS — counted as provider
calls at the fake Twilio."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import func, select, text

from shared.core.db import session_scope
from shared.core.models import Message, ScheduledMessage
from tests.fakes import FakeMeta, FakeTwilio
from tests.helpers import wait_for
from tests.integration.processes import WorkerProcess
from tests.integration.test_failover import worker_env
from tests.integration.test_scheduler_processes import SCHEDULER_ENV, SchedulerProcess

N_APPOINTMENTS = 60
N_NOT_ON_WHATSAPP = 30
PLAN = "reminder_1h=whatsapp>sms:lembrete_consulta@start-1h"


@pytest.fixture
def twilio() -> Iterator[FakeTwilio]:
    with FakeTwilio() as fake:
        yield fake


@pytest.fixture
def meta() -> Iterator[FakeMeta]:
    with FakeMeta() as fake:
        yield fake


def book_watched(n: int) -> None:
    """n appointments, each with a due `reminder_1h` row whose chain is
    whatsapp>sms (as schedule_booking plans it), loaded in bulk."""
    statements = [
        """
        INSERT INTO contacts (id, name, created_at, updated_at)
        SELECT md5('c' || g)::uuid, 'Paciente ' || g, now(), now()
        FROM generate_series(1, :n) AS g
        """,
        """
        INSERT INTO contact_identities (contact_id, kind, value)
        SELECT md5('c' || g)::uuid, 'phone', '+55119' || (70000000 + g)
        FROM generate_series(1, :n) AS g
        """,
        """
        INSERT INTO appointments (id, external_id, contact_id, address, starts_at,
        duration_minutes, timezone, status, version, created_at, updated_at)
        SELECT md5('a' || g)::uuid, 'bulk-' || g, md5('c' || g)::uuid, 'Rua A, 1',
        now() + interval '3 hours', 30, 'America/Sao_Paulo', 'scheduled', 1, now(), now()
        FROM generate_series(1, :n) AS g
        """,
        """
        INSERT INTO scheduled_messages (appointment_id, kind, channel, template, due_at,
        status, appointment_version, created_at, updated_at, fallback_channels, fallback_state)
        SELECT a.id, 'reminder_1h', 'whatsapp', 'lembrete_consulta', now() - interval '1 second',
        'pending', 1, now(), now(), 'sms', 'watching'
        FROM appointments a
        """,
    ]
    with session_scope() as s:
        for statement in statements:
            s.execute(text(statement), {"n": n})


@pytest.mark.slow
def test_three_schedulers_two_workers_one_fallback_per_row(
    settings: Any, twilio: FakeTwilio, meta: FakeMeta, tmp_path: Any
) -> None:
    book_watched(N_APPOINTMENTS)
    meta.fail(400, "131026", times=N_NOT_ON_WHATSAPP)  # the rest are accepted, never delivered
    env = worker_env(twilio, meta)
    workers = [WorkerProcess("sms,whatsapp", 2, tmp_path / f"worker-{i}.log", env) for i in range(2)]
    scheduler_env = {
        **SCHEDULER_ENV,
        "SCHEDULE_PLAN": PLAN,
        # 3 s: the accepted-but-undelivered half fails over while all race.
        "FAILOVER_DELIVERY_DEADLINE_MINUTES": "0.05",
    }
    schedulers: list[SchedulerProcess] = []
    try:
        for w in workers:
            w.wait_ready()
        schedulers = [
            SchedulerProcess(tmp_path / f"scheduler-{i}.log", scheduler_env) for i in range(3)
        ]

        def finished() -> bool:
            with session_scope() as s:
                watching = s.scalar(
                    select(func.count())
                    .select_from(ScheduledMessage)
                    .where(ScheduledMessage.fallback_state == "watching")
                )
            return watching == 0 and len(twilio.sends()) >= N_APPOINTMENTS

        wait_for(finished, timeout=120, interval=0.5)
        # Any duplicate (a second scheduler's fallback, a redelivered task)
        # would reach the fake within a few more ticks.
        import time

        time.sleep(3)
    finally:
        codes = [p.terminate() for p in schedulers]
        for w in workers:
            w.stop()

    assert codes == [0, 0, 0]
    assert len(meta.sends()) == N_APPOINTMENTS  # one WhatsApp attempt per row
    per_message = Counter(
        parse_qs(urlsplit(r.form["StatusCallback"]).query)["mid"][0] for r in twilio.sends()
    )
    assert len(per_message) == N_APPOINTMENTS and set(per_message.values()) == {1}
    with session_scope() as s:
        sms = s.execute(
            select(Message.id, Message.metadata_).where(Message.channel == "sms")
        ).all()
        rows = s.execute(
            select(ScheduledMessage.id, ScheduledMessage.fallback_state,
                   ScheduledMessage.fallback_message_id, ScheduledMessage.fallback_reason)
        ).all()
    assert {str(m.id) for m in sms} == set(per_message)
    assert Counter(m.metadata_["scheduled_message_id"] for m in sms) == Counter(
        {r.id: 1 for r in rows}
    )
    assert {r.fallback_state for r in rows} == {"sent"}
    assert {r.fallback_message_id for r in rows} == {m.id for m in sms}
    reasons = Counter(r.fallback_reason for r in rows)
    assert reasons == {
        "whatsapp failed permanently (131026): sms": N_NOT_ON_WHATSAPP,
        "no delivery on whatsapp within 0.05 min of sending: sms": (
            N_APPOINTMENTS - N_NOT_ON_WHATSAPP
        ),
    }
    created = [
        sum(r.get("fallbacks_created", 0) for r in p.records() if r.get("msg") == "failover run")
        for p in schedulers
    ]
    assert sum(created) == N_APPOINTMENTS, created
