"""Failover (scheduler/failover.py) on real PostgreSQL/Redis with a real send
worker: WhatsApp through the fake Meta Graph API, SMS through the fake
Twilio, provider calls counted on the fakes. The clock of the failover run
is moved with time-machine; the worker (another process) keeps real time,
so the appointments are in the real future."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import time_machine
from sqlalchemy import select, text

from ingest.api.auth import generate_api_key, hash_api_key
from scheduler.claim import run_tick
from scheduler.failover import run_failover
from shared.core.db import session_scope
from shared.core.models import ApiKey, Conversation, Message, OptOut, ScheduledMessage
from shared.scheduling.appointments import (
    get_for_update,
    upsert_appointment,
    validate_appointment,
)
from tests.fakes import FakeMeta, FakeSMTP, FakeTwilio
from tests.helpers import wait_for
from tests.integration.processes import WorkerProcess

PLAN = "reminder_1h=whatsapp>sms:lembrete_consulta@start-1h"
NOT_A_WHATSAPP_USER = "131026"


def worker_env(
    twilio: FakeTwilio, meta: FakeMeta, smtp: FakeSMTP | None = None
) -> dict[str, str]:
    return {
        **(smtp.env() if smtp else {}),
        **twilio.env(),
        **meta.env(),  # WhatsApp through Meta, SMS through Twilio
        "SCHEDULE_PLAN": PLAN,
        "RATE_LIMIT_SMS": "10000/second",
        "RATE_LIMIT_SMS_BURST": "10000",
        "RATE_LIMIT_WHATSAPP": "10000/second",
        "RATE_LIMIT_WHATSAPP_BURST": "10000",
        "RATE_LIMIT_WHATSAPP_PAIR": "1000/second",
        "PROVIDER_CONNECT_TIMEOUT_SECONDS": "0.5",
        "PROVIDER_READ_TIMEOUT_SECONDS": "2",
    }


@pytest.fixture(scope="module")
def twilio() -> Iterator[FakeTwilio]:
    with FakeTwilio() as fake:
        yield fake


@pytest.fixture(scope="module")
def meta() -> Iterator[FakeMeta]:
    with FakeMeta() as fake:
        yield fake


@pytest.fixture(scope="module")
def smtp() -> Iterator[FakeSMTP]:
    fake = FakeSMTP("plain").start()
    yield fake
    fake.stop()


@pytest.fixture(autouse=True)
def reset_fakes(meta: FakeMeta, twilio: FakeTwilio, smtp: FakeSMTP) -> None:
    for fake in (meta, twilio):
        with fake.lock:
            fake.requests.clear()
            fake.plan.clear()
    smtp.received.clear()


@pytest.fixture(scope="module")
def worker(
    tmp_path_factory: Any, twilio: FakeTwilio, meta: FakeMeta, smtp: FakeSMTP
) -> Iterator[WorkerProcess]:
    log = Path(tmp_path_factory.mktemp("w")) / "failover-worker.log"
    # `inbound` too: provider status webhooks are applied by its status task.
    proc = WorkerProcess("sms,whatsapp,email,inbound", 2, log, worker_env(twilio, meta, smtp))
    proc.wait_ready()
    yield proc
    proc.stop()


@pytest.fixture
def cfg(settings: Any) -> Any:
    # Quiet hours off unless a test sets them: the worker runs on real time.
    return settings.model_copy(update={"SCHEDULE_PLAN": PLAN, "QUIET_HOURS_CHANNELS": []})


def book(cfg: Any, starts_at: datetime, external_id: str = "ext-1") -> uuid.UUID:
    doc = {
        "external_id": external_id,
        "contact": {"name": "Maria", "phone": "+5511999990000"},
        "starts_at": starts_at.isoformat(),
        "duration_minutes": 40,
        "professional": "Dra. Ana",
        "address": "Rua A, 1",
    }
    data, _ = validate_appointment(doc, cfg)
    with session_scope() as s:
        return upsert_appointment(s, data, cfg).appointment.id


def row_of(appointment_id: uuid.UUID) -> ScheduledMessage:
    with session_scope() as s:
        row = s.scalars(
            select(ScheduledMessage).where(
                ScheduledMessage.appointment_id == appointment_id,
                ScheduledMessage.kind == "reminder_1h",
            )
        ).one()
        s.expunge(row)
        return row


def message(message_id: uuid.UUID | None) -> Message:
    assert message_id is not None
    with session_scope() as s:
        m = s.get(Message, message_id)
        assert m is not None
        s.expunge(m)
        return m


def settled(message_id: uuid.UUID | None, *statuses: str) -> Message:
    return wait_for(
        lambda: (m := message(message_id)).status in statuses and m, timeout=30, interval=0.1
    )


def first_reminder_sent(cfg: Any, starts_in: timedelta = timedelta(hours=2)) -> uuid.UUID:
    """Book a visit `starts_in` from now and send its WhatsApp reminder now."""
    appointment_id = book(cfg, datetime.now(UTC) + starts_in)
    with session_scope() as s:
        s.execute(
            text("UPDATE scheduled_messages SET due_at = now() WHERE appointment_id = :a"),
            {"a": appointment_id},
        )
    assert run_tick(cfg).created == 1
    return appointment_id


def test_not_a_whatsapp_user_gets_exactly_one_sms(
    cfg: Any, worker: WorkerProcess, meta: FakeMeta, twilio: FakeTwilio, client: Any
) -> None:
    meta.fail(400, NOT_A_WHATSAPP_USER)
    appointment_id = first_reminder_sent(cfg)
    first = settled(row_of(appointment_id).message_id, "failed")
    assert first.error_code == NOT_A_WHATSAPP_USER
    assert len(meta.sends_for(str(first.id))) == 1

    assert run_failover(cfg).created == 1
    row = row_of(appointment_id)
    fallback = settled(row.fallback_message_id, "sent", "delivered")
    wait_for(lambda: len(twilio.sends()) >= 1)
    # More runs (another scheduler, a retried tick) make nothing more.
    assert run_failover(cfg).examined == 0
    assert len(twilio.sends()) == 1
    assert len(twilio.sends_for(str(fallback.id))) == 1
    assert twilio.sends()[0].form["To"] == "+5511999990000"
    assert "Lembrete" in twilio.sends()[0].form["Body"]

    assert fallback.channel == "sms" and fallback.template == "lembrete_consulta"
    assert fallback.metadata_["fallback_of"] == str(first.id)
    assert fallback.metadata_["scheduled_message_id"] == row.id
    assert fallback.idempotency_key == f"fallback:{row.id}:v1:sms"
    assert row.fallback_state == "sent"
    assert row.fallback_reason == "whatsapp failed permanently (131026): sms"

    # Visible in the appointment as the booking system reads it.
    key = generate_api_key()
    with session_scope() as s:
        s.add(ApiKey(name="booking", key_hash=hash_api_key(key), scopes=["read"]))
    resp = client.get(
        f"/api/appointments/{appointment_id}", headers={"Authorization": f"Bearer {key}"}
    )
    assert resp.status_code == 200
    [shown] = [m for m in resp.get_json()["scheduled_messages"] if m["kind"] == "reminder_1h"]
    assert shown["message_id"] == str(first.id) and shown["message_status"] == "failed"
    assert shown["fallback"]["channels"] == ["sms"]
    assert shown["fallback"]["state"] == "sent"
    assert shown["fallback"]["message_id"] == str(fallback.id)
    assert shown["fallback"]["channel"] == "sms"
    assert shown["fallback"]["message_status"] in ("sent", "delivered")


def test_a_failed_status_webhook_from_meta_triggers_the_sms(
    cfg: Any, worker: WorkerProcess, meta: FakeMeta, twilio: FakeTwilio
) -> None:
    """Meta often accepts the send and reports 131026 later, in a `failed`
    status: the signed webhook, through ingest and the status task, is what
    makes the row fail over."""
    from tests.integration.test_meta_webhook import change, envelope, status
    from tests.integration.test_webhook_contract import make_provider_client, meta_request

    appointment_id = first_reminder_sent(cfg)
    first = settled(row_of(appointment_id).message_id, "sent")
    assert run_failover(cfg).examined == 0  # sent, deadline far: nothing yet
    failed = status(
        first.provider_message_id,
        "failed",
        errors=[{"code": 131026, "title": "Message undeliverable",
                 "message": "Message undeliverable",
                 "error_data": {"details": "Message Undeliverable."}}],
        biz_opaque_callback_data=str(first.id),
    )
    body, headers = meta_request(envelope(change({"statuses": [failed]})))
    client = make_provider_client(cfg)
    assert client.post("/webhooks/meta", data=body, headers=headers).status_code == 200
    assert settled(first.id, "failed").error_code == "131026"

    assert run_failover(cfg).created == 1
    fallback = settled(row_of(appointment_id).fallback_message_id, "sent", "delivered")
    wait_for(lambda: len(twilio.sends()) >= 1)
    assert len(twilio.sends()) == 1 and len(twilio.sends_for(str(fallback.id))) == 1


def test_no_delivery_before_the_deadline_sends_one_sms_at_the_deadline(
    cfg: Any, worker: WorkerProcess, meta: FakeMeta, twilio: FakeTwilio
) -> None:
    appointment_id = first_reminder_sent(cfg)
    first = settled(row_of(appointment_id).message_id, "sent")
    assert first.sent_at is not None
    deadline = first.sent_at + timedelta(minutes=cfg.FAILOVER_DELIVERY_DEADLINE_MINUTES)

    with time_machine.travel(deadline - timedelta(seconds=1), tick=False):
        assert run_failover(cfg).examined == 0  # not yet
    with time_machine.travel(deadline, tick=False):
        assert run_failover(cfg).created == 1
    with time_machine.travel(deadline + timedelta(minutes=5), tick=False):
        assert run_failover(cfg).examined == 0  # the fallback is the last of the chain

    row = row_of(appointment_id)
    fallback = settled(row.fallback_message_id, "sent", "delivered")
    assert fallback.created_at == deadline
    wait_for(lambda: len(twilio.sends()) >= 1)
    assert len(twilio.sends()) == 1 and len(twilio.sends_for(str(fallback.id))) == 1
    assert row.fallback_reason == "no delivery on whatsapp within 15 min of sending: sms"


def test_delivered_in_time_needs_no_fallback(
    cfg: Any, worker: WorkerProcess, twilio: FakeTwilio
) -> None:
    appointment_id = first_reminder_sent(cfg)
    first = settled(row_of(appointment_id).message_id, "sent")
    with session_scope() as s:  # Meta's `delivered` status, as the status sync records it
        s.execute(
            text("UPDATE messages SET status = 'delivered', delivered_at = now() WHERE id = :m"),
            {"m": first.id},
        )
    with time_machine.travel(first.sent_at + timedelta(minutes=30), tick=False):
        assert run_failover(cfg).created == 0
    row = row_of(appointment_id)
    assert row.fallback_state == "delivered" and row.fallback_message_id is None
    assert twilio.sends() == []


def test_patient_opted_out_of_sms_gets_no_sms_and_the_reason_is_recorded(
    cfg: Any, worker: WorkerProcess, meta: FakeMeta, twilio: FakeTwilio
) -> None:
    meta.fail(400, NOT_A_WHATSAPP_USER)
    appointment_id = first_reminder_sent(cfg)
    settled(row_of(appointment_id).message_id, "failed")
    with session_scope() as s:
        contact_id = s.execute(
            text("SELECT contact_id FROM appointments WHERE id = :a"), {"a": appointment_id}
        ).scalar_one()
        s.add(OptOut(contact_id=contact_id, channel="sms", keyword="SAIR"))

    result = run_failover(cfg)
    assert (result.examined, result.created) == (1, 0)
    row = row_of(appointment_id)
    assert row.fallback_state == "skipped" and row.fallback_message_id is None
    assert row.fallback_reason == (
        "whatsapp failed permanently (131026); fallback_skipped: opted_out (sms)"
    )
    with session_scope() as s:
        assert s.scalar(select(Message.id).where(Message.channel == "sms")) is None
    assert twilio.sends() == []


def test_opted_out_of_whatsapp_only_gets_the_sms(
    cfg: Any, worker: WorkerProcess, meta: FakeMeta, twilio: FakeTwilio
) -> None:
    appointment_id = book(cfg, datetime.now(UTC) + timedelta(hours=2))
    with session_scope() as s:
        contact_id = s.execute(
            text("SELECT contact_id FROM appointments WHERE id = :a"), {"a": appointment_id}
        ).scalar_one()
        s.add(OptOut(contact_id=contact_id, channel="whatsapp", keyword="SAIR"))
        s.execute(
            text("UPDATE scheduled_messages SET due_at = now() WHERE appointment_id = :a"),
            {"a": appointment_id},
        )
    run_tick(cfg)
    first = message(row_of(appointment_id).message_id)
    assert first.status == "skipped" and meta.sends() == []
    assert run_failover(cfg).created == 1
    row = row_of(appointment_id)
    assert row.fallback_reason == "whatsapp skipped (patient opted out of it): sms"
    wait_for(lambda: len(twilio.sends()) >= 1)
    assert len(twilio.sends()) == 1


def test_no_fallback_once_the_visit_started(
    cfg: Any, worker: WorkerProcess, meta: FakeMeta, twilio: FakeTwilio
) -> None:
    meta.fail(400, NOT_A_WHATSAPP_USER)
    appointment_id = first_reminder_sent(cfg, starts_in=timedelta(hours=2))
    settled(row_of(appointment_id).message_id, "failed")
    # The failover run comes only after the visit started (scheduler down).
    with time_machine.travel(datetime.now(UTC) + timedelta(hours=2, minutes=1), tick=False):
        assert run_failover(cfg).created == 0
    row = row_of(appointment_id)
    assert row.fallback_state == "skipped"
    assert row.fallback_reason == (
        "whatsapp failed permanently (131026); no fallback: appointment already started"
    )
    assert twilio.sends() == []


def test_a_failure_that_is_not_a_failover_code_ends_the_watch(
    cfg: Any, worker: WorkerProcess, meta: FakeMeta, twilio: FakeTwilio
) -> None:
    meta.fail(401, "190")  # our token is wrong: SMS would not be the cure
    appointment_id = first_reminder_sent(cfg)
    settled(row_of(appointment_id).message_id, "failed")
    assert run_failover(cfg).created == 0
    row = row_of(appointment_id)
    assert row.fallback_state == "none"
    assert row.fallback_reason == "whatsapp message failed (190): not a failover case"
    assert twilio.sends() == []


def _quiet(cfg: Any, start: datetime, end: datetime) -> Any:
    tz = cfg.timezone
    return cfg.model_copy(
        update={
            "QUIET_HOURS_CHANNELS": ["sms"],
            "QUIET_HOURS_START": start.astimezone(tz).time().replace(second=0, microsecond=0),
            "QUIET_HOURS_END": end.astimezone(tz).time().replace(second=0, microsecond=0),
        }
    )


def test_a_deadline_in_quiet_hours_waits_for_their_end_if_still_before_the_visit(
    cfg: Any, worker: WorkerProcess, twilio: FakeTwilio
) -> None:
    appointment_id = first_reminder_sent(cfg)
    first = settled(row_of(appointment_id).message_id, "sent")
    deadline = first.sent_at + timedelta(minutes=15)
    # SMS quiet from 5 min before the deadline until 20 min after it.
    quiet = _quiet(cfg, deadline - timedelta(minutes=5), deadline + timedelta(minutes=20))
    with time_machine.travel(deadline + timedelta(seconds=30), tick=False):
        result = run_failover(quiet)
    assert (result.deferred, result.created) == (1, 0)
    quiet_end = row_of(appointment_id)
    assert quiet_end.fallback_state == "watching" and quiet_end.fallback_due_at is not None
    assert quiet_end.fallback_reason.startswith(
        "no delivery on whatsapp within 15 min of sending; quiet hours: sms at "
    )
    resume = quiet_end.fallback_due_at
    assert deadline < resume <= deadline + timedelta(minutes=20)
    with time_machine.travel(resume - timedelta(seconds=1), tick=False):
        assert run_failover(quiet).examined == 0
    with time_machine.travel(resume, tick=False):
        assert run_failover(quiet).created == 1
    fallback = settled(row_of(appointment_id).fallback_message_id, "sent", "delivered")
    assert fallback.created_at == resume
    wait_for(lambda: len(twilio.sends()) >= 1)
    assert len(twilio.sends()) == 1


def test_a_deadline_in_quiet_hours_lasting_past_the_visit_means_no_fallback(
    cfg: Any, worker: WorkerProcess, twilio: FakeTwilio
) -> None:
    appointment_id = first_reminder_sent(cfg, starts_in=timedelta(hours=2))
    first = settled(row_of(appointment_id).message_id, "sent")
    deadline = first.sent_at + timedelta(minutes=15)
    # Quiet until after the visit (which starts less than 2 h after the deadline).
    quiet = _quiet(cfg, deadline - timedelta(minutes=5), deadline + timedelta(hours=3))
    with time_machine.travel(deadline, tick=False):
        assert run_failover(quiet).created == 0
    row = row_of(appointment_id)
    assert row.fallback_state == "skipped"
    assert row.fallback_reason == (
        "no delivery on whatsapp within 15 min of sending; "
        "fallback_skipped: quiet hours until after the visit (sms)"
    )
    assert twilio.sends() == []


def test_a_cancellation_notice_falls_back_to_sms(
    cfg: Any, worker: WorkerProcess, meta: FakeMeta, twilio: FakeTwilio
) -> None:
    from shared.scheduling.appointments import cancel_appointment

    notices = cfg.model_copy(
        update={
            "SCHEDULE_PLAN": "reminder_24h=email:lembrete_consulta@start-24h",
            "CANCELLATION_NOTICE_CHANNELS": ["whatsapp"],
            "CANCELLATION_NOTICE_FALLBACK": "sms",
        }
    )
    appointment_id = book(notices, datetime.now(UTC) + timedelta(days=2))
    with session_scope() as s:
        appt = get_for_update(s, appointment_id)
        # The patient wrote today: the notice goes as free text (no approved
        # WhatsApp template is configured for `cancelamento`).
        s.add(Conversation(contact_id=appt.contact_id, channel="whatsapp",
                           last_inbound_at=datetime.now(UTC)))
        cancel_appointment(s, appt, notices)
    meta.fail(400, NOT_A_WHATSAPP_USER)
    assert run_tick(notices).created == 1
    with session_scope() as s:
        row = s.scalars(
            select(ScheduledMessage).where(ScheduledMessage.kind == "cancellation_whatsapp")
        ).one()
        assert (row.fallback_channels, row.fallback_state) == ("sms", "watching")
        first_id, row_id = row.message_id, row.id
    settled(first_id, "failed")
    assert run_failover(notices).created == 1
    with session_scope() as s:
        row = s.get(ScheduledMessage, row_id)
        assert row is not None and row.fallback_state == "sent"
        fallback_id = row.fallback_message_id
    fallback = settled(fallback_id, "sent", "delivered")
    assert (fallback.channel, fallback.template) == ("sms", "cancelamento")
    assert fallback.metadata_["phase"] == "cancellation"
    wait_for(lambda: len(twilio.sends()) >= 1)
    assert len(twilio.sends()) == 1 and "cancelad" in twilio.sends()[0].form["Body"].lower()


def test_a_reschedule_gives_the_new_time_its_own_failover(
    cfg: Any, worker: WorkerProcess, meta: FakeMeta, twilio: FakeTwilio
) -> None:
    """The old version's fallback is spent; the re-armed reminder for the new
    time is watched again, and its fallback has its own key."""
    from shared.scheduling.appointments import change_appointment

    meta.fail(400, NOT_A_WHATSAPP_USER, times=2)
    appointment_id = first_reminder_sent(cfg)
    settled(row_of(appointment_id).message_id, "failed")
    assert run_failover(cfg).created == 1
    wait_for(lambda: len(twilio.sends()) == 1)

    with session_scope() as s:
        starts_at = get_for_update(s, appointment_id).starts_at
        change_appointment(s, appointment_id, {"starts_at": starts_at + timedelta(minutes=30)}, cfg)
    row = row_of(appointment_id)
    assert (row.status, row.fallback_state, row.fallback_message_id) == (
        "pending", "watching", None)
    with session_scope() as s:
        s.execute(text("UPDATE scheduled_messages SET due_at = now() WHERE id = :r"), {"r": row.id})
    assert run_tick(cfg).created == 1
    settled(row_of(appointment_id).message_id, "failed")
    assert run_failover(cfg).created == 1
    row = row_of(appointment_id)
    assert message(row.fallback_message_id).idempotency_key == f"fallback:{row.id}:v2:sms"
    wait_for(lambda: len(twilio.sends()) == 2)
    assert len({r.form["StatusCallback"] for r in twilio.sends()}) == 2


# --- on-call alerts (ONCALL_ALERT_FALLBACK) -------------------------------------------

ONCALL = "+5511977776666"
ONCALL_EMAIL = "plantao@clinicateste.com.br"


@pytest.fixture
def oncall(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    from shared.core.config import get_settings

    for name, value in {
        "ONCALL_PHONE": ONCALL,
        "ONCALL_EMAIL": ONCALL_EMAIL,
        "ONCALL_ALERT_FALLBACK": "email",
        "AUTO_ACK_ENABLED": "false",
        "QUIET_HOURS_CHANNELS": "",
    }.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    yield get_settings()
    monkeypatch.undo()
    get_settings.cache_clear()


def urgent_alert_sent(*statuses: str) -> Message:
    """A patient writes something urgent; the on-call SMS goes out through
    the real reaction and the worker; returns it once it settled."""
    from shared.inbound.reactions import react_to_inbound
    from tests.integration.test_automations import file_message

    react_to_inbound(str(file_message("Dr to com febre e sangrando muito depois da lipo")))
    with session_scope() as s:
        alert = s.scalars(
            select(Message).where(Message.to_address == ONCALL, Message.channel == "sms")
        ).one()
        assert alert.metadata_["failover_channels"] == ["email"]
    return settled(alert.id, *statuses)


def oncall_emails(smtp: FakeSMTP) -> list[Any]:
    return [r for r in smtp.received if ONCALL_EMAIL in r.rcpt_tos]


def test_an_oncall_sms_to_a_landline_falls_back_to_email_once(
    oncall: Any, worker: WorkerProcess, twilio: FakeTwilio, smtp: FakeSMTP
) -> None:
    from scheduler.failover import run_alert_failover

    twilio.fail(400, "30006")  # landline or unreachable carrier
    alert = urgent_alert_sent("failed")
    assert alert.error_code == "30006"
    assert run_alert_failover(oncall).created == 1
    assert run_alert_failover(oncall).created == 0  # the key exists: never twice
    with session_scope() as s:
        fallback = s.scalars(select(Message).where(Message.to_address == ONCALL_EMAIL)).one()
        assert fallback.idempotency_key == f"fallback:{alert.id}:email"
        assert fallback.metadata_["fallback_of"] == str(alert.id)
        assert fallback.purpose == "alert" and fallback.template == "alerta_urgente"
    wait_for(lambda: len(oncall_emails(smtp)) >= 1)
    assert len(oncall_emails(smtp)) == 1
    assert len(twilio.sends()) == 1


def test_an_undelivered_oncall_sms_falls_back_at_the_deadline(
    oncall: Any, worker: WorkerProcess, twilio: FakeTwilio, smtp: FakeSMTP
) -> None:
    from scheduler.failover import run_alert_failover

    alert = urgent_alert_sent("sent")
    assert alert.sent_at is not None
    deadline = alert.sent_at + timedelta(minutes=oncall.FAILOVER_DELIVERY_DEADLINE_MINUTES)
    with time_machine.travel(deadline - timedelta(seconds=1), tick=False):
        assert run_alert_failover(oncall).examined == 0
    with time_machine.travel(deadline, tick=False):
        assert run_alert_failover(oncall).created == 1
    with time_machine.travel(deadline + timedelta(minutes=1), tick=False):
        assert run_alert_failover(oncall).examined == 0
    wait_for(lambda: len(oncall_emails(smtp)) >= 1)
    assert len(oncall_emails(smtp)) == 1
