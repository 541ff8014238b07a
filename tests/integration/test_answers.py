"""Answers in one tap, end to end: real ingest (signed provider webhooks),
real inbound/send worker processes, real PostgreSQL/Redis, fake Meta
(WhatsApp) and Twilio (SMS) at the edge. The worker runs with
PATIENT_CANCEL_MODE=direct (request mode: tests/integration/test_replies.py).

Covers shared/inbound/patient_actions.py, the buttons of the 1 h WhatsApp
reminder (whatsapp/lembrete_consulta.buttons), numbered SMS answers, and the
no-question variant after a confirmation (plan `?confirmed=`)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select, update

from scheduler.claim import claim_batch, run_tick
from shared.core.db import session_scope
from shared.core.models import (
    Appointment,
    Message,
    MessageEvent,
    ScheduledMessage,
    WaitlistSlot,
)
from shared.outbound.create import enqueue_send
from shared.scheduling.appointments import upsert_appointment, validate_appointment
from tests.fakes import FakeTwilio
from tests.fakes.meta import FakeMeta
from tests.fakes.smtp import FakeSMTP
from tests.helpers import dumps, sign_headers, wait_for
from tests.integration.processes import WorkerProcess
from tests.integration.test_meta_webhook import envelope, inbound, text_message
from tests.integration.test_webhook_contract import (
    make_provider_client,
    meta_request,
    twilio_request,
)

SP = ZoneInfo("America/Sao_Paulo")
PHONE = "+5511987650002"
OTHER_PHONE = "+5511987650003"
SUPORTE = "suporte@portalclinic.com.br"


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
    fake = FakeSMTP().start()
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def worker(
    tmp_path_factory: Any, twilio: FakeTwilio, meta: FakeMeta, smtp: FakeSMTP
) -> Iterator[WorkerProcess]:
    env = {
        **twilio.env(),
        **meta.env(),  # WhatsApp through Meta, SMS through Twilio
        **smtp.env(),
        "EMAIL_SUPORTE": SUPORTE,
        "PATIENT_CANCEL_MODE": "direct",
        "QUIET_HOURS_CHANNELS": "",
        "RATE_LIMIT_SMS": "1000/second",
        "RATE_LIMIT_WHATSAPP": "1000/second",
        "RATE_LIMIT_WHATSAPP_PAIR": "1000/second",
        "RATE_LIMIT_EMAIL": "1000/second",
    }
    log = Path(tmp_path_factory.mktemp("w")) / "answers-worker.log"
    proc = WorkerProcess("inbound,email,sms,whatsapp", 2, log, env)
    proc.wait_ready()
    yield proc
    proc.stop()


@pytest.fixture(autouse=True)
def reset_fakes(twilio: FakeTwilio, meta: FakeMeta, smtp: FakeSMTP) -> None:
    for fake in (twilio, meta):
        with fake.lock:
            fake.requests.clear()
            fake.plan.clear()
    twilio.messages.clear()
    smtp.received.clear()


@pytest.fixture
def cfg(settings: Any) -> Any:
    # The tick runs in this process: no quiet hours (the real clock may be
    # in São Paulo's night), the same cancel mode as the worker.
    return settings.model_copy(
        update={"QUIET_HOURS_CHANNELS": [], "PATIENT_CANCEL_MODE": "direct"}
    )


@pytest.fixture
def client(settings: Any) -> Any:
    return make_provider_client(settings)


def book(cfg: Any, external_id: str, days: int, phone: str = PHONE) -> uuid.UUID:
    day = (datetime.now(SP) + timedelta(days=days)).date()
    starts = datetime(day.year, day.month, day.day, 14, 30, tzinfo=SP)
    data, _ = validate_appointment(
        {
            "external_id": external_id,
            "contact": {"name": "Maria", "phone": phone},
            "starts_at": starts.isoformat(),
            "professional": "Dra. Ana",
            "address": "Rua A, 1",
        },
        cfg,
    )
    with session_scope() as s:
        return upsert_appointment(s, data, cfg).appointment.id


def appointment(aid: uuid.UUID) -> Appointment:
    with session_scope() as s:
        appt = s.get(Appointment, aid)
        assert appt is not None
        return appt


def rows(aid: uuid.UUID) -> dict[str, ScheduledMessage]:
    with session_scope() as s:
        return {
            r.kind: r
            for r in s.scalars(select(ScheduledMessage).where(ScheduledMessage.appointment_id == aid))
        }


def outbound(**where: Any) -> list[Message]:
    with session_scope() as s:
        q = select(Message).where(Message.direction == "outbound")
        for key, value in where.items():
            q = q.where(getattr(Message, key) == value)
        return list(s.scalars(q.order_by(Message.created_at)))


def sent(template: str) -> list[Message]:
    return [m for m in outbound(template=template) if m.status in ("sent", "delivered")]


def make_due(aid: uuid.UUID, *kinds: str) -> None:
    """These rows come due now; every other pending row of the appointment
    is set aside (so only what the test is about is sent)."""
    with session_scope() as s:
        s.execute(
            update(ScheduledMessage)
            .where(ScheduledMessage.appointment_id == aid, ScheduledMessage.kind.in_(kinds))
            .values(due_at=datetime.now(UTC) - timedelta(seconds=1))
        )
        s.execute(
            update(ScheduledMessage)
            .where(
                ScheduledMessage.appointment_id == aid,
                ScheduledMessage.kind.not_in(kinds),
                ScheduledMessage.status == "pending",
            )
            .values(due_at=datetime.now(UTC) + timedelta(days=30))
        )


def _filed(field: str, value: str) -> uuid.UUID:
    def find() -> uuid.UUID | None:
        with session_scope() as s:
            return s.scalar(select(Message.id).where(getattr(Message, field) == value))

    return wait_for(find)


def meta_tap(client: Any, payload: str, label: str, phone: str = PHONE) -> uuid.UUID:
    """The patient taps a quick reply of a WhatsApp template (Meta's webhook)."""
    item = inbound({"type": "button", "button": {"payload": payload, "text": label}},
                   wa_id=phone.lstrip("+"))
    wamid = item["value"]["messages"][0]["id"]
    body, headers = meta_request(envelope(item))
    assert client.post("/webhooks/meta", data=body, headers=headers).status_code == 200
    return _filed("provider_message_id", wamid)


def meta_text(client: Any, text: str, phone: str = PHONE) -> uuid.UUID:
    item = text_message(text, wa_id=phone.lstrip("+"))
    wamid = item["value"]["messages"][0]["id"]
    body, headers = meta_request(envelope(item))
    assert client.post("/webhooks/meta", data=body, headers=headers).status_code == 200
    return _filed("provider_message_id", wamid)


def sms(client: Any, text: str, phone: str = PHONE) -> uuid.UUID:
    sid = "SM" + uuid.uuid4().hex
    body, headers = twilio_request(
        {"MessageSid": sid, "AccountSid": "AC" + "0" * 32, "From": phone,
         "To": "+5511900000000", "Body": text}
    )
    assert client.post("/webhooks/twilio", data=body, headers=headers).status_code == 200
    return _filed("provider_message_id", sid)


def reacted(mid: uuid.UUID) -> bool:
    with session_scope() as s:
        msg = s.get(Message, mid)
        return msg is not None and msg.reacted_at is not None


def events(mid: uuid.UUID) -> list[str]:
    with session_scope() as s:
        return list(s.scalars(select(MessageEvent.event).where(MessageEvent.message_id == mid)))


def meta_templates(meta: FakeMeta) -> list[dict[str, Any]]:
    return [r.json for r in meta.sends() if r.json.get("type") == "template"]


# --- one tap on the right appointment -------------------------------------------------


def test_tap_on_the_second_appointments_reminder_confirms_the_second(
    client: Any, worker: WorkerProcess, meta: FakeMeta, cfg: Any
) -> None:
    first = book(cfg, "tap-1", days=2)
    second = book(cfg, "tap-2", days=4)
    make_due(second, "reminder_1h")
    make_due(first)  # nothing of the first is due
    assert run_tick(cfg).enqueued == 1

    # The 1 h reminder goes out as the approved template with three quick
    # replies naming the SECOND appointment (outside the service window).
    (reminder,) = wait_for(lambda: meta_templates(meta))
    assert reminder["template"]["name"] == "lembrete_consulta"
    buttons = [c for c in reminder["template"]["components"] if c["type"] == "button"]
    assert [(b["index"], b["parameters"][0]["payload"]) for b in buttons] == [
        ("0", f"CONFIRM_{second}"), ("1", f"RESCHEDULE_{second}"), ("2", f"CANCEL_{second}")]

    tap = meta_tap(client, f"CONFIRM_{second}", "Confirmar")
    wait_for(lambda: appointment(second).status == "confirmed")
    wait_for(lambda: reacted(tap))
    assert appointment(first).status == "scheduled"
    (answer,) = wait_for(lambda: sent("confirmacao_presenca"))
    assert answer.channel == "whatsapp" and answer.metadata_["appointment_id"] == str(second)


def test_tap_naming_another_patients_appointment_is_ignored(
    client: Any, worker: WorkerProcess, meta: FakeMeta, cfg: Any
) -> None:
    mine = book(cfg, "own-1", days=3)
    theirs = book(cfg, "own-2", days=3, phone=OTHER_PHONE)
    tap = meta_tap(client, f"CANCEL_{theirs}", "Cancelar")  # from PHONE
    wait_for(lambda: reacted(tap))
    assert appointment(theirs).status == "scheduled"
    assert appointment(mine).status == "scheduled"
    assert outbound(purpose="auto_reply") == []
    with session_scope() as s:
        msg = s.get(Message, tap)
        assert msg is not None and msg.sender_verified is True


def test_unverified_senders_tap_does_nothing(client: Any, worker: WorkerProcess, cfg: Any) -> None:
    """The public form is signed by the website, not the patient: a payload
    typed there acts on nothing (the team is told)."""
    aid = book(cfg, "unv-1", days=3)
    body = dumps({"type": "message", "channel": "web", "contact": {"phone": PHONE},
                  "message": {"text": f"CANCEL_{aid}"}})
    resp = client.post("/api/webhook", data=body, headers=sign_headers(body))
    assert resp.status_code == 202, resp.get_json()
    mid = uuid.UUID(resp.get_json()["message_id"])
    wait_for(lambda: "command_unverified" in events(mid))
    assert appointment(aid).status == "scheduled"
    assert {r.status for r in rows(aid).values()} <= {"pending", "skipped"}
    assert outbound(template="cancelamento") == []


# --- after a confirmation, no more questions -----------------------------------------


def test_after_sim_the_claimed_1h_reminder_goes_as_the_no_question_variant(
    client: Any, worker: WorkerProcess, meta: FakeMeta, cfg: Any
) -> None:
    aid = book(cfg, "sim-1", days=3)
    make_due(aid, "reminder_1h")
    with session_scope() as s:  # claimed (message made, template lembrete_consulta) …
        batch = claim_batch(s, cfg, datetime.now(UTC), 100)
    [(reminder_id, channel)] = batch.to_enqueue
    assert outbound(id=reminder_id)[0].template == "lembrete_consulta"

    answer = meta_text(client, "SIM")  # … then the patient confirms …
    wait_for(lambda: appointment(aid).status == "confirmed")
    wait_for(lambda: reacted(answer))
    wait_for(lambda: len(meta.sends()) == 1)  # the confirmation's answer
    enqueue_send(reminder_id, channel)  # … and only then is it sent
    wait_for(lambda: outbound(id=reminder_id)[0].status in ("sent", "delivered"))

    sends = meta.sends()
    assert len(sends) == 2  # the answer + the reminder, nothing else
    reminder = meta.sends_for(str(reminder_id))
    assert len(reminder) == 1
    text = reminder[0].json["text"]["body"]  # inside the window the SIM opened
    assert "confirmada" in text and "Responda" not in text and "confirmar" not in text
    row = outbound(id=reminder_id)[0]
    assert row.template == "lembrete_confirmado"
    assert "template_switched" in events(reminder_id)


def test_a_reminder_claimed_after_the_confirmation_is_the_variant_or_skipped(
    client: Any, worker: WorkerProcess, meta: FakeMeta, twilio: FakeTwilio, cfg: Any
) -> None:
    aid = book(cfg, "sim-2", days=3)
    sms_answer = sms(client, "1")
    wait_for(lambda: appointment(aid).status == "confirmed")
    wait_for(lambda: reacted(sms_answer))
    wait_for(lambda: len(twilio.sends()) == 1)  # "Sua presença foi confirmada!"

    # Default: the 24 h SMS (anchored at start) becomes lembrete_confirmado.
    make_due(aid, "reminder_24h")
    run_tick(cfg)
    (reminder,) = wait_for(lambda: sent("lembrete_confirmado"))
    assert reminder.channel == "sms"
    wait_for(lambda: len(twilio.sends()) == 2)
    body = twilio.sends()[1].form["Body"]
    assert body.startswith("Lembrete: sua consulta confirmada") and "Responda" not in body

    # `?confirmed=skip`: the 1 h reminder is not sent at all.
    skip_plan = cfg.SCHEDULE_PLAN.replace(
        "reminder_1h=whatsapp:lembrete_consulta@start-1h",
        "reminder_1h=whatsapp:lembrete_consulta@start-1h?confirmed=skip",
    )
    assert skip_plan != cfg.SCHEDULE_PLAN
    make_due(aid, "reminder_1h")
    run_tick(cfg.model_copy(update={"SCHEDULE_PLAN": skip_plan}))
    row = rows(aid)["reminder_1h"]
    assert (row.status, row.reason) == ("skipped", "appointment confirmed: reminder_1h not sent (?confirmed=skip)")
    assert meta.sends() == []


# --- numbered answers to the 24 h SMS --------------------------------------------------


def test_numbered_sms_answers_act_on_the_appointment_the_latest_reminder_was_about(
    client: Any, worker: WorkerProcess, twilio: FakeTwilio, smtp: FakeSMTP, cfg: Any
) -> None:
    nearest = book(cfg, "num-1", days=2)
    later = book(cfg, "num-2", days=5)
    make_due(later, "reminder_24h")
    make_due(nearest)
    run_tick(cfg)
    (reminder,) = wait_for(lambda: sent("lembrete"))
    assert reminder.metadata_["appointment_id"] == str(later)
    # The question, then the self-service link of that appointment.
    body = twilio.sends()[0].form["Body"]
    assert "Responda 1 confirma, 2 remarca, 3 cancela ou: https://" in body
    assert body.rstrip().rpartition("/a/")[2]

    two = sms(client, "2")  # reschedule the LATER one (the reminder's)
    (alert,) = wait_for(lambda: sent("pedido_paciente"))
    assert alert.metadata_["appointment_id"] == str(later)
    (ack,) = wait_for(lambda: sent("remarcacao_recebida"))
    assert ack.channel == "sms" and ack.metadata_["in_reply_to"] == str(two)
    mail = wait_for(lambda: smtp.received)[0]
    assert "remarcar" in mail.message["Subject"]

    sms(client, "1")
    wait_for(lambda: appointment(later).status == "confirmed")
    assert appointment(nearest).status == "scheduled"


# --- cancel, direct mode ---------------------------------------------------------------


def test_three_cancels_the_appointment_and_what_is_pending(
    client: Any, worker: WorkerProcess, twilio: FakeTwilio, cfg: Any
) -> None:
    aid = book(cfg, "can-1", days=3)
    make_due(aid, "reminder_24h")
    run_tick(cfg)
    wait_for(lambda: sent("lembrete"))
    assert rows(aid)["reminder_1h"].status == "pending"

    three = sms(client, "3")
    wait_for(lambda: appointment(aid).status == "cancelled")
    wait_for(lambda: reacted(three))
    kinds = rows(aid)
    assert kinds["reminder_1h"].status == "cancelled"
    assert kinds["reminder_1h"].reason == "appointment cancelled"
    assert kinds["reminder_24h"].status == "sent"  # what went out stays
    (answer,) = wait_for(lambda: sent("cancelamento"))
    assert answer.channel == "sms"
    wait_for(lambda: len(twilio.sends()) == 2)
    assert "foi cancelada" in twilio.sends()[1].form["Body"]
    # The freed time, 3 days ahead, is offered to the waitlist.
    with session_scope() as s:
        slot = s.scalar(select(WaitlistSlot).where(WaitlistSlot.appointment_id == aid))
        assert slot is not None and slot.status == "open"


def test_cancel_button_cancels_that_appointment(
    client: Any, worker: WorkerProcess, meta: FakeMeta, cfg: Any
) -> None:
    first = book(cfg, "cb-1", days=2)
    second = book(cfg, "cb-2", days=4)
    tap = meta_tap(client, f"CANCEL_{second}", "Cancelar")
    wait_for(lambda: appointment(second).status == "cancelled")
    wait_for(lambda: reacted(tap))
    assert appointment(first).status == "scheduled"
    assert {r.status for r in rows(second).values() if r.status != "skipped"} == {"cancelled"}
    assert {r.status for r in rows(first).values() if r.status != "skipped"} == {"pending"}
    (answer,) = wait_for(lambda: sent("cancelamento"))
    assert answer.channel == "whatsapp" and answer.metadata_["appointment_id"] == str(second)
    wait_for(lambda: len(meta.sends()) == 1)
    assert "foi cancelada" in meta.sends()[0].json["text"]["body"]
