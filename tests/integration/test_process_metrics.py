"""Prometheus metrics of the worker and the scheduler, scraped from the real
processes: after a scripted burst, the counts in /metrics equal what the fake
provider saw and what the database holds.

The worker runs two pool processes: the figures are summed across them
(prometheus-client multiprocess mode), or the counts would come out short."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select

from shared.core.db import session_scope
from shared.core.models import Appointment, Contact, ContactIdentity, Message, ScheduledMessage
from shared.outbound.create import OutboundRequest, create_outbound_message, enqueue_send
from shared.runtime.embedded import free_port
from tests.fakes import FakeTwilio
from tests.helpers import wait_for
from tests.integration.processes import WorkerProcess
from tests.integration.test_scheduler_processes import SCHEDULER_ENV, SchedulerProcess

BURST = 12
REFUSED = 3  # permanent 21211 (invalid number)
THROTTLED = 2  # a 429 each, then accepted


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def total(samples: dict[Any, float], name: str, **labels: str) -> float:
    return sum(
        value
        for (sample_name, sample_labels), value in samples.items()
        if sample_name == name and all(dict(sample_labels).get(k) == v for k, v in labels.items())
    )


@pytest.fixture
def twilio() -> Iterator[FakeTwilio]:
    with FakeTwilio() as fake:
        yield fake


def _contact(s: Any, phone: str) -> uuid.UUID:
    contact = Contact(name="Ana")
    s.add(contact)
    s.flush()
    s.add(ContactIdentity(
        contact_id=contact.id, kind="phone", value=phone,
        verified_at=datetime.now(UTC), verified_via="api",
    ))
    return contact.id


def test_worker_metrics_count_what_the_provider_saw(tmp_path: Path, twilio: FakeTwilio) -> None:
    port = free_port()
    worker = WorkerProcess(
        "sms",
        2,
        tmp_path / "worker.log",
        {
            **twilio.env(),
            "WORKER_METRICS_PORT": str(port),
            "RATE_LIMIT_SMS": "1000/second",
            "SEND_RETRY_BASE_SECONDS": "0.2",
            "SEND_MAX_ATTEMPTS": "3",
        },
    )
    try:
        worker.wait_ready()
        # The fake answers in order: the refusals and the 429s come first.
        twilio.fail(400, "21211", times=REFUSED)
        twilio.fail(429, "20429", times=THROTTLED, retry_after="0")
        ids = []
        with session_scope() as s:
            for i in range(BURST):
                phone = f"+55119876543{i:02d}"
                created = create_outbound_message(
                    s,
                    OutboundRequest(
                        channel="sms", to_address=phone, contact_id=_contact(s, phone),
                        text="Lembrete: consulta amanhã",
                    ),
                )
                ids.append(created.message_id)
        for mid in ids:
            enqueue_send(mid, "sms")

        def settled() -> bool:
            with session_scope() as s:
                return s.scalar(
                    select(func.count()).where(
                        Message.id.in_(ids), Message.status.in_(("sent", "failed"))
                    )
                ) == BURST

        wait_for(settled, timeout=60)
        with session_scope() as s:
            sent = s.scalar(select(func.count()).where(Message.id.in_(ids), Message.status == "sent"))
            failed = s.scalar(
                select(func.count()).where(Message.id.in_(ids), Message.status == "failed")
            )
        assert (sent, failed) == (BURST - REFUSED, REFUSED)
        calls = len(twilio.sends())
        assert calls == BURST + THROTTLED

        samples = scrape(port)
        assert total(samples, "clinicq_sends_total", channel="sms", outcome="sent") == sent
        assert total(samples, "clinicq_sends_total", channel="sms", outcome="failed") == REFUSED
        assert total(samples, "clinicq_sends_total", channel="sms", outcome="retry") == THROTTLED
        assert total(samples, "clinicq_send_retries_total", provider="twilio_sms") == THROTTLED
        assert total(samples, "clinicq_provider_request_seconds_count", provider="twilio_sms") == calls
        text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        assert "+5511" not in text and "Lembrete" not in text  # no PII in metrics
    finally:
        worker.stop()


def test_scheduler_metrics_lag_claims_and_backlog(tmp_path: Path) -> None:
    due_rows = 7
    lag = timedelta(minutes=10)
    now = datetime.now(UTC)
    with session_scope() as s:
        for i in range(due_rows):
            phone = f"+55119123456{i:02d}"
            contact_id = _contact(s, phone)
            appt = Appointment(
                external_id=f"metrics-{i}", contact_id=contact_id,
                starts_at=now + timedelta(hours=20), status="scheduled",
                timezone="America/Sao_Paulo",
            )
            s.add(appt)
            s.flush()
            s.add(ScheduledMessage(
                appointment_id=appt.id, kind="reminder_24h", channel="sms", template="lembrete",
                due_at=now - lag, status="pending", appointment_version=appt.version,
            ))
    port = free_port()
    # No worker consumes `sms` here: what the scheduler enqueues waits in the
    # queue, so its depth and age are known.
    scheduler = SchedulerProcess(
        tmp_path / "scheduler.log", {**SCHEDULER_ENV, "SCHEDULER_METRICS_PORT": str(port)}
    )
    try:
        def claimed() -> bool:
            try:
                return total(scrape(port), "clinicq_scheduler_rows_claimed_total") == due_rows
            except requests.ConnectionError:
                return False

        try:
            wait_for(claimed, timeout=60)
        except AssertionError:
            raise AssertionError(scheduler.log_path.read_text()[-3000:]) from None
        samples = scrape(port)
        assert total(samples, "clinicq_scheduler_lag_seconds_count") == due_rows
        # Each row was claimed at least ten minutes after it was due.
        assert total(samples, "clinicq_scheduler_lag_seconds_sum") >= due_rows * lag.total_seconds()
        assert total(samples, "clinicq_queue_depth", queue="sms") == due_rows
        assert total(samples, "clinicq_queue_oldest_task_age_seconds", queue="sms") > 0
        assert total(samples, "clinicq_queue_depth", queue="email") == 0
        assert total(samples, "clinicq_backlog_rows", kind="messages_queued") == due_rows
        assert total(samples, "clinicq_backlog_rows", kind="scheduled_overdue") == 0
        assert total(samples, "clinicq_collector_up", source="redis") == 1
        assert total(samples, "clinicq_collector_up", source="postgres") == 1
        assert total(samples, "clinicq_scheduler_job_runs_total", job="tick", outcome="ok") >= 1
    finally:
        scheduler.terminate()
