"""Outbound delivery end to end: real Celery worker processes running the real
provider clients (twilio SDK, requests) against local fake Twilio/Meta servers,
real PostgreSQL and Redis. Provider failures (429, 5xx, timeouts, permanent
codes) are in test_provider_failures.py, once for every provider; the helpers
here serve it too."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from shared.contacts.optouts import record_opt_out
from shared.core.db import session_scope
from shared.core.models import Contact, Conversation, Message, MessageEvent
from shared.outbound.create import OutboundRequest, create_outbound_message, enqueue_send
from shared.outbound.reconciler import reconcile_stuck_messages
from tests.fakes import FakeTwilio
from tests.helpers import wait_for
from tests.integration.processes import WorkerProcess

PATIENT = "+5511987654321"
MAX_ATTEMPTS = 3


@pytest.fixture(scope="module")
def twilio() -> Iterator[FakeTwilio]:
    with FakeTwilio() as fake:
        yield fake


@pytest.fixture(autouse=True)
def reset_fakes(twilio: FakeTwilio) -> None:
    for fake in (twilio,):
        with fake.lock:
            fake.requests.clear()
            fake.plan.clear()
        fake.default_delay = 0.0
    twilio.messages.clear()


def worker_env(extra: dict[str, str]) -> dict[str, str]:
    return {
        "PROVIDER_CONNECT_TIMEOUT_SECONDS": "0.5",
        "PROVIDER_READ_TIMEOUT_SECONDS": "1.5",
        "SEND_MAX_ATTEMPTS": str(MAX_ATTEMPTS),
        "SEND_RETRY_BASE_SECONDS": "0.2",
        "RATE_LIMIT_SMS": "1000/second",
        "RATE_LIMIT_WHATSAPP": "1000/second",
        "RATE_LIMIT_WHATSAPP_PAIR": "1000/second",
        "TWILIO_CONTENT_SIDS": "lembrete_consulta=HX1234567890abcdef1234567890abcdef",
        # Short enough that the reconciler may judge a killed worker's
        # `sending` rows within the crash test (it waits for the time limit).
        "SEND_TASK_TIME_LIMIT_SECONDS": "6",
        "RECONCILE_STUCK_AFTER_SECONDS": "7",
        **extra,
    }


@pytest.fixture(scope="module")
def twilio_worker(tmp_path_factory: Any, twilio: FakeTwilio) -> Iterator[WorkerProcess]:
    """One worker for the module (start-up costs seconds): sms + whatsapp via Twilio."""
    log = Path(tmp_path_factory.mktemp("w")) / "twilio-worker.log"
    worker = WorkerProcess("sms,whatsapp", 2, log, worker_env(twilio.env()))
    worker.wait_ready()
    yield worker
    worker.stop()


@pytest.fixture
def reconcile(monkeypatch: pytest.MonkeyPatch) -> Any:
    """Run the reconciler in this process configured like the worker (it asks
    the fake Twilio); settings are read once per process, hence the reset."""
    import shared.providers as providers
    from shared.core.config import get_settings

    def run(env: dict[str, str], **kwargs: Any) -> Any:
        for key, value in worker_env(env).items():
            monkeypatch.setenv(key, value)
        get_settings.cache_clear()
        providers._INSTANCES.clear()
        try:
            return reconcile_stuck_messages(**kwargs)
        finally:
            for key in worker_env(env):
                monkeypatch.delenv(key)
            get_settings.cache_clear()
            providers._INSTANCES.clear()

    return run


def new_contact(phone: str = PATIENT, inbound_minutes_ago: float | None = None) -> uuid.UUID:
    with session_scope() as s:
        contact = Contact(name="Ana")
        s.add(contact)
        s.flush()
        if inbound_minutes_ago is not None:
            s.add(Conversation(
                contact_id=contact.id, channel="whatsapp", status="active",
                last_inbound_at=datetime.fromtimestamp(time.time() - 60 * inbound_minutes_ago, UTC),
            ))
        return contact.id


def send(channel: str = "sms", text: str | None = "Lembrete: consulta amanhã às 14:00",
         contact_id: uuid.UUID | None = None, enqueue: bool = True, **extra: Any) -> uuid.UUID:
    contact_id = contact_id or new_contact()
    with session_scope() as s:
        created = create_outbound_message(s, OutboundRequest(
            channel=channel, to_address=PATIENT, contact_id=contact_id, text=text, **extra))
    assert created.should_enqueue
    if enqueue:
        enqueue_send(created.message_id, channel)
    return created.message_id


def message(mid: uuid.UUID) -> Message:
    with session_scope() as s:
        row = s.get(Message, mid)
        assert row is not None
        s.expunge(row)
        return row


def events(mid: uuid.UUID) -> list[str]:
    with session_scope() as s:
        return list(s.scalars(select(MessageEvent.event).where(MessageEvent.message_id == mid)
                              .order_by(MessageEvent.id)))


def settled(mid: uuid.UUID, *statuses: str, timeout: float = 30) -> Message:
    wait_for(lambda: message(mid).status in statuses, timeout=timeout)
    return message(mid)


def test_sms_sent_once_with_status_callback_and_cost(twilio: FakeTwilio, twilio_worker: WorkerProcess) -> None:
    mid = send()
    row = settled(mid, "sent")
    [req] = twilio.sends_for(str(mid))
    assert req.form["To"] == PATIENT and req.form["From"] == "+551133334444"
    assert req.form["Body"] == "Lembrete: consulta amanhã às 14:00"
    assert req.form["StatusCallback"] == f"https://clinicq.test/webhooks/twilio/status?mid={mid}"
    assert row.provider == "twilio_sms" and row.provider_message_id.startswith("SM")
    assert row.attempts == 1 and str(row.cost) == "0.2000" and row.cost_currency == "BRL"
    assert events(mid) == ["created", "claimed", "sent"]
    # A redelivered task finds the row settled and sends nothing.
    enqueue_send(mid, "sms")
    time.sleep(1.0)
    assert len(twilio.sends_for(str(mid))) == 1


def test_timeout_not_accepted_is_resent_by_reconciler(twilio: FakeTwilio, twilio_worker: WorkerProcess, reconcile: Any) -> None:
    twilio.hang(3.0, accept=False)
    mid = send()
    settled(mid, "unknown")
    time.sleep(4.1)
    report = reconcile(twilio.env(), stuck_after_seconds=0)
    assert report.requeued == [str(mid)]
    settled(mid, "sent")
    assert len(twilio.sends_for(str(mid))) == 2 and len(twilio.accepted_for(str(mid))) == 1


def test_opt_out_after_creation_is_honoured_at_send_time(twilio: FakeTwilio, twilio_worker: WorkerProcess) -> None:
    contact_id = new_contact()
    mid = send(contact_id=contact_id, enqueue=False)
    with session_scope() as s:
        record_opt_out(s, contact_id, "all", "SAIR", "test")
    enqueue_send(mid, "sms")
    row = settled(mid, "skipped")
    assert row.status_reason == "recipient opted out of sms"
    assert twilio.sends_for(str(mid)) == []


def test_opt_out_before_creation_is_skipped_and_never_enqueued() -> None:
    contact_id = new_contact()
    with session_scope() as s:
        record_opt_out(s, contact_id, "sms", "PARAR", "test")
    with session_scope() as s:
        created = create_outbound_message(s, OutboundRequest(
            channel="sms", to_address=PATIENT, contact_id=contact_id, text="oi"))
    assert (created.status, created.should_enqueue) == ("skipped", False)


def test_twilio_whatsapp_free_form_inside_window_template_outside(
    twilio: FakeTwilio, twilio_worker: WorkerProcess
) -> None:
    data = {"paciente_nome": "Ana", "data": "10/12", "horario": "14:00", "endereco": "Rua A, 1",
            "confirm_payload": "CONFIRM_appt-1", "appointment_id": "appt-1"}
    # confirmacao_presenca has no buttons: free-form inside the window.
    inside = send("whatsapp", text=None, contact_id=new_contact(inbound_minutes_ago=30),
                  template="confirmacao_presenca", template_data=data)
    outside = send("whatsapp", text=None, contact_id=new_contact(inbound_minutes_ago=25 * 60),
                   template="lembrete_consulta", template_data=data)
    # A template with quick replies goes as its Content template inside the
    # window too: the buttons are never lost.
    buttons_inside = send("whatsapp", text=None, contact_id=new_contact(inbound_minutes_ago=30),
                          template="lembrete_consulta", template_data=data)
    settled(inside, "sent")
    settled(outside, "sent")
    settled(buttons_inside, "sent")
    [a] = twilio.sends_for(str(inside))
    [b] = twilio.sends_for(str(outside))
    [c] = twilio.sends_for(str(buttons_inside))
    assert a.form["To"] == f"whatsapp:{PATIENT}" and a.form["From"] == "whatsapp:+14155238886"
    assert a.form["Body"].startswith("Sua presença foi confirmada!") and "ContentSid" not in a.form
    assert c.form["ContentSid"] == b.form["ContentSid"] and "Body" not in c.form
    assert c.form["ContentVariables"] == b.form["ContentVariables"]
    assert b.form["ContentSid"] == "HX1234567890abcdef1234567890abcdef" and "Body" not in b.form
    import json

    assert json.loads(b.form["ContentVariables"]) == {
        "1": "Ana", "2": "10/12", "3": "14:00", "4": "Rua A, 1",
        # the quick replies' payloads follow the body parameters
        "5": "CONFIRM_appt-1", "6": "RESCHEDULE_appt-1", "7": "CANCEL_appt-1"}


def test_twilio_whatsapp_free_text_outside_window_fails_without_calling(
    twilio: FakeTwilio, twilio_worker: WorkerProcess
) -> None:
    mid = send("whatsapp", text="Olá!", contact_id=new_contact(inbound_minutes_ago=None))
    row = settled(mid, "failed")
    assert row.error_code == "63016" and twilio.sends_for(str(mid)) == []


def test_reconciler_leaves_a_send_in_flight_alone(
    twilio: FakeTwilio, twilio_worker: WorkerProcess, reconcile: Any
) -> None:
    # The fake takes 1 s to answer (inside the 1.5 s read timeout) and only
    # then accepts: Twilio has no trace of it meanwhile. A reconciler run in
    # that second, even one told to treat everything as stuck, must not
    # re-queue it (that would send it twice).
    twilio.hang(1.0, accept=False)
    mid = send()
    wait_for(lambda: message(mid).status == "sending", timeout=20, interval=0.01)
    report = reconcile(twilio.env(), stuck_after_seconds=0)
    assert report.total == 0 and report.lookup_errors == []
    row = settled(mid, "sent")
    time.sleep(1.0)
    assert row.provider_message_id == "SMlate" and message(mid).status == "sent"
    assert len(twilio.sends_for(str(mid))) == 1


def test_lost_queued_task_is_reenqueued_unless_a_countdown_is_pending(
    twilio: FakeTwilio, twilio_worker: WorkerProcess, reconcile: Any
) -> None:
    from sqlalchemy import text

    from shared.outbound.delivery import note_pending

    lost = send(enqueue=False)  # its task never reached the broker
    waiting = send(enqueue=False)  # its task waits on a countdown
    note_pending(str(waiting), 30)
    with session_scope() as s:
        s.execute(text("UPDATE messages SET updated_at = now() - interval '1 hour'"))
    report = reconcile(twilio.env(), stuck_after_seconds=0, lost_queued_after_seconds=60)
    assert report.reenqueued_lost == [str(lost)]
    settled(lost, "sent")
    assert message(waiting).status == "queued" and twilio.sends_for(str(waiting)) == []
