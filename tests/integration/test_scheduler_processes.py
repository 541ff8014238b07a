"""`python -m scheduler` as real processes: three at once over 1,000
appointments, real send workers, fake Twilio counting provider calls."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson
import pytest
from sqlalchemy import func, select, text

from scheduler.maintenance import close_idle_conversations
from scheduler.service import build_scheduler
from shared.core.db import session_scope
from shared.core.models import Contact, Conversation, Message, ScheduledMessage
from tests.fakes import FakeTwilio
from tests.helpers import wait_for
from tests.infra import ROOT
from tests.integration.processes import WorkerProcess

N_APPOINTMENTS = 1000
PLAN = "reminder_24h=sms:lembrete@start-24h;reminder_1h=whatsapp:lembrete_consulta@start-1h"
SCHEDULER_ENV = {
    "SCHEDULE_PLAN": PLAN,
    "QUIET_HOURS_CHANNELS": "",
    "SCHEDULER_TICK_SECONDS": "0.2",
    "SCHEDULER_BATCH_SIZE": "50",
    "SCHEDULER_MAINTENANCE_SECONDS": "30",
    "PYTHONUNBUFFERED": "1",
}


class SchedulerProcess:
    def __init__(self, log_path: Path, env: dict[str, str]):
        self.log_path = log_path
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "scheduler"],
            cwd=ROOT,
            env={**os.environ, **env},
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def records(self) -> list[dict[str, Any]]:
        out = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                try:
                    out.append(orjson.loads(line))
                except orjson.JSONDecodeError:
                    continue
        return out

    def claimed(self) -> int:
        return sum(r.get("claimed", 0) for r in self.records() if r.get("msg") == "scheduler tick")

    def terminate(self, timeout: float = 20) -> int:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self._log.close()
        return self.proc.returncode


@pytest.fixture
def twilio() -> Iterator[FakeTwilio]:
    with FakeTwilio() as fake:
        yield fake


def book_many(settings: Any, n: int) -> None:
    """n appointments with their two reminder rows, loaded in bulk (the
    booking path itself is covered in test_appointments.py); each patient
    has a phone identity, as the claim needs."""
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
        now() + interval '3 days' + g * interval '1 minute', 30,
        'America/Sao_Paulo', 'scheduled', 1, now(), now()
        FROM generate_series(1, :n) AS g
        """,
        """
        INSERT INTO scheduled_messages (appointment_id, kind, channel, template, due_at,
        status, appointment_version, created_at, updated_at)
        SELECT a.id, k.kind, k.channel, k.template, a.starts_at - k.before, 'pending', 1,
        now(), now()
        FROM appointments a CROSS JOIN (VALUES
        ('reminder_24h', 'sms', 'lembrete', interval '24 hours'),
        ('reminder_1h', 'whatsapp', 'lembrete_consulta', interval '1 hour')
        ) AS k(kind, channel, template, before)
        """,
    ]
    with session_scope() as s:
        for statement in statements:
            s.execute(text(statement), {"n": n})


@pytest.mark.slow
def test_three_schedulers_send_every_reminder_exactly_once(settings, twilio, tmp_path) -> None:
    book_many(settings, N_APPOINTMENTS)
    # Time passes: every reminder is due now (the appointments are still ahead).
    with session_scope() as s:
        s.execute(text("UPDATE scheduled_messages SET due_at = now() - interval '1 second'"))
        assert s.scalar(select(func.count()).select_from(ScheduledMessage)) == 2 * N_APPOINTMENTS

    worker_env = {
        **twilio.env(),
        "RATE_LIMIT_SMS": "10000/second",
        "RATE_LIMIT_SMS_BURST": "10000",
        "RATE_LIMIT_WHATSAPP": "10000/second",
        "RATE_LIMIT_WHATSAPP_BURST": "10000",
        "RATE_LIMIT_WHATSAPP_PAIR": "1000/second",
        "TWILIO_CONTENT_SIDS": "lembrete_consulta=HX1234567890abcdef1234567890abcdef",
    }
    worker = WorkerProcess("sms,whatsapp", 4, tmp_path / "send-worker.log", worker_env)
    schedulers = [
        SchedulerProcess(tmp_path / f"scheduler-{i}.log", SCHEDULER_ENV) for i in range(3)
    ]
    try:
        worker.wait_ready()

        def pending() -> int:
            with session_scope() as s:
                return s.scalar(
                    select(func.count())
                    .select_from(ScheduledMessage)
                    .where(ScheduledMessage.status == "pending")
                ) or 0

        wait_for(lambda: pending() == 0, timeout=120, interval=0.5)
        wait_for(lambda: len(twilio.sends()) >= 2 * N_APPOINTMENTS, timeout=180, interval=0.5)
        time.sleep(2)  # any duplicate send would arrive now
    finally:
        codes = [p.terminate() for p in schedulers]
        worker.stop()

    assert codes == [0, 0, 0], "SIGTERM stops a scheduler cleanly"
    claimed = [p.claimed() for p in schedulers]
    assert sum(claimed) == 2 * N_APPOINTMENTS, claimed
    assert sum(1 for c in claimed if c > 0) >= 2, f"the schedulers did not compete: {claimed}"

    # Provider calls, counted on the fake: one per reminder, none twice.
    per_message = Counter(
        parse_qs(urlsplit(r.form["StatusCallback"]).query)["mid"][0] for r in twilio.sends()
    )
    assert len(per_message) == 2 * N_APPOINTMENTS
    assert set(per_message.values()) == {1}
    with session_scope() as s:
        messages = s.execute(select(Message.id, Message.channel, Message.status)).all()
        rows = s.execute(select(ScheduledMessage.status, ScheduledMessage.message_id)).all()
    assert {str(m.id) for m in messages} == set(per_message)
    assert Counter(m.channel for m in messages) == {"sms": N_APPOINTMENTS, "whatsapp": N_APPOINTMENTS}
    assert {r.status for r in rows} == {"sent"}
    assert len({r.message_id for r in rows}) == 2 * N_APPOINTMENTS


def test_service_wires_the_periodic_jobs(settings) -> None:
    jobs = {job.id for job in build_scheduler(settings).get_jobs()}
    assert jobs == {
        "tick",
        "close_idle_conversations",
        "reconcile_stuck_messages",
        "realert_unanswered_urgent",
        "report_failed_agent_replies",
        "redrive_unreacted_messages",
        "offer_waitlist_slots",
        "sweep_webhook_deliveries",
    }
    with_imap = build_scheduler(settings.model_copy(update={"IMAP_HOST": "127.0.0.1"}))
    assert "poll_mailbox" in {job.id for job in with_imap.get_jobs()}


def test_idle_conversations_are_closed_but_not_those_waiting_for_an_agent(settings) -> None:
    now = datetime.now(UTC)
    with session_scope() as s:
        ids = []
        for idle_hours, needs_agent in ((100, False), (100, True), (1, False)):
            contact = Contact(name="x")
            s.add(contact)
            s.flush()
            conv = Conversation(
                contact_id=contact.id,
                channel="sms",
                needs_agent=needs_agent,
                last_message_at=now - timedelta(hours=idle_hours),
            )
            s.add(conv)
            s.flush()
            ids.append(conv.id)
    assert close_idle_conversations(settings, now) == 1
    with session_scope() as s:
        statuses = [s.get(Conversation, i).status for i in ids]
    assert statuses == ["closed", "active", "active"]
