"""Replies that act, end to end: signed webhook → real inbound worker →
reaction (shared/inbound/replies.py) → real send workers → fake Twilio / real SMTP."""

from __future__ import annotations

import time
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
from shared.core.models import Appointment, Conversation, Message, OptOut, ScheduledMessage
from shared.inbound.replies import (
    CANCEL_REQUEST,
    CLAIM,
    CONFIRM,
    OPT_OUT,
    OPT_OUT_EVERYTHING,
    RESCHEDULE,
    classify,
    normalize_reply,
)
from shared.outbound.create import enqueue_send
from shared.scheduling.appointments import upsert_appointment, validate_appointment
from tests.fakes import FakeTwilio
from tests.fakes.smtp import FakeSMTP
from tests.helpers import dumps, wait_for
from tests.integration.processes import WorkerProcess
from tests.integration.test_webhook_contract import make_provider_client, twilio_request

SP = ZoneInfo("America/Sao_Paulo")
PHONE = "+5511987650001"
SUPORTE = "suporte@portalclinic.com.br"


# --- matching (pure) ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("1", CONFIRM),
        ("Sim", CONFIRM),
        ("  sim! ", CONFIRM),
        ("SIM, confirmo.", CONFIRM),
        ("Confirmar", CONFIRM),
        ("2", RESCHEDULE),
        ("Não", RESCHEDULE),
        ("nao", RESCHEDULE),
        ("REMARCAR", RESCHEDULE),
        ("remarcar!", RESCHEDULE),
        ("Cancelar", CANCEL_REQUEST),
        ("3", CANCEL_REQUEST),
        ("cancela", CANCEL_REQUEST),
        ("Quero", CLAIM),
        ("QUERO!", CLAIM),
        ("SAIR", OPT_OUT),
        ("parar", OPT_OUT),
        ("Stop", OPT_OUT),
        ("descadastrar", OPT_OUT),
        ("Sair de tudo", OPT_OUT_EVERYTHING),
        ("STOP ALL", OPT_OUT_EVERYTHING),
        ("não posso ir amanhã", None),
        ("sim, mas posso chegar atrasado?", None),
        ("quero cancelar e remarcar", None),
        ("12", None),
        ("", None),
        ("sair " * 30, None),
    ],
)
def test_classify(text: str, kind: str | None) -> None:
    command = classify(text)
    assert (command.kind if command else None) == kind


def test_confirm_payload_names_the_appointment() -> None:
    aid = uuid.uuid4()
    command = classify("Confirmar presença", f"CONFIRM_{aid}")
    assert command is not None and command.kind == CONFIRM and command.appointment_id == aid
    assert classify(None, "CONFIRM_not-a-uuid") is None


@pytest.mark.parametrize(("prefix", "kind"), [("RESCHEDULE", RESCHEDULE), ("CANCEL", CANCEL_REQUEST)])
def test_every_appointment_payload_names_its_appointment(prefix: str, kind: str) -> None:
    aid = uuid.uuid4()
    command = classify("Cancelar", f"{prefix}_{aid}")
    assert command is not None and (command.kind, command.appointment_id) == (kind, aid)


def test_claim_payload_names_the_offer() -> None:
    command = classify("Quero", "CLAIM_42")
    assert command is not None and (command.kind, command.offer_id) == (CLAIM, 42)
    assert classify("Quero", "CLAIM_x") is not None  # not a payload: the text decides


def test_normalize_reply() -> None:
    assert normalize_reply("  Não!!  ") == "NAO"
    assert normalize_reply("Sim,\tconfirmo.") == "SIM CONFIRMO"


# --- end to end -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def twilio() -> Iterator[FakeTwilio]:
    with FakeTwilio() as fake:
        yield fake


@pytest.fixture(scope="module")
def smtp() -> Iterator[FakeSMTP]:
    fake = FakeSMTP().start()
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def worker(tmp_path_factory: Any, twilio: FakeTwilio, smtp: FakeSMTP) -> Iterator[WorkerProcess]:
    env = {
        **twilio.env(),
        **smtp.env(),
        "EMAIL_SUPORTE": SUPORTE,
        "RATE_LIMIT_SMS": "1000/second",
        "RATE_LIMIT_WHATSAPP": "1000/second",
        "RATE_LIMIT_WHATSAPP_PAIR": "1000/second",
        "RATE_LIMIT_EMAIL": "1000/second",
        "TWILIO_CONTENT_SIDS": "lembrete_consulta=HX1234567890abcdef1234567890abcdef",
    }
    log = Path(tmp_path_factory.mktemp("w")) / "replies-worker.log"
    proc = WorkerProcess("inbound,email,sms,whatsapp", 2, log, env)
    proc.wait_ready()
    yield proc
    proc.stop()


@pytest.fixture(autouse=True)
def reset_fakes(twilio: FakeTwilio, smtp: FakeSMTP) -> None:
    with twilio.lock:
        twilio.requests.clear()
        twilio.plan.clear()
    twilio.messages.clear()
    smtp.received.clear()


@pytest.fixture
def cfg(settings):
    # The real clock may be in São Paulo's night: these tests are about replies.
    return settings.model_copy(update={"QUIET_HOURS_CHANNELS": []})


def book(cfg, external_id="ext-1", days=3, phone=PHONE) -> uuid.UUID:
    day = (datetime.now(SP) + timedelta(days=days)).date()
    starts = datetime(day.year, day.month, day.day, 14, 30, tzinfo=SP)
    data, _ = validate_appointment(
        {
            "external_id": external_id,
            "contact": {"name": "Maria", "phone": phone, "email": "maria@example.com"},
            "starts_at": starts.isoformat(),
            "professional": "Dra. Ana",
            "address": "Rua A, 1",
        },
        cfg,
    )
    with session_scope() as s:
        return upsert_appointment(s, data, cfg).appointment.id


@pytest.fixture
def client(settings):
    """Ingest with Twilio's secret: the patient replies through Twilio, the
    channel that vouches for their number (a form-signed webhook may not act
    for a patient: tests/integration/test_trust.py)."""
    return make_provider_client(settings)


def reply(client, text: str, channel: str = "sms", metadata: dict | None = None) -> str:
    """The patient's reply, as Twilio delivers it; returns the filed message's id."""
    sid = "SM" + uuid.uuid4().hex
    form = {
        "MessageSid": sid,
        "AccountSid": "AC" + "0" * 32,
        "From": f"whatsapp:{PHONE}" if channel == "whatsapp" else PHONE,
        "To": "whatsapp:+14155238886" if channel == "whatsapp" else "+5511900000000",
        "Body": text,
    }
    if metadata and "button_payload" in metadata:
        form["ButtonPayload"] = metadata["button_payload"]
    body, headers = twilio_request(form)
    resp = client.post("/webhooks/twilio", data=body, headers=headers)
    assert resp.status_code == 200, resp.get_data(as_text=True)

    def filed() -> str | None:
        with session_scope() as s:
            mid = s.scalar(select(Message.id).where(Message.provider_message_id == sid))
            return str(mid) if mid else None

    return wait_for(filed)


def outbound(**where) -> list[Message]:
    with session_scope() as s:
        q = select(Message).where(Message.direction == "outbound")
        for key, value in where.items():
            q = q.where(getattr(Message, key) == value)
        return list(s.scalars(q.order_by(Message.created_at)))


def appointment(aid) -> Appointment:
    with session_scope() as s:
        return s.get(Appointment, aid)


def twilio_bodies(twilio: FakeTwilio) -> list[tuple[str, str]]:
    return [(r.form.get("To"), r.form.get("Body")) for r in twilio.sends()]


def test_sim_on_whatsapp_confirms_and_replies(client, worker, twilio, cfg) -> None:
    aid = book(cfg)
    reply(client, "Sim!", channel="whatsapp")
    wait_for(lambda: appointment(aid).status == "confirmed")
    wait_for(lambda: [m for m in outbound(template="confirmacao_presenca") if m.status == "delivered" or m.status == "sent"])
    (sent,) = outbound(template="confirmacao_presenca")
    assert sent.channel == "whatsapp" and sent.to_address == PHONE
    wait_for(lambda: len(twilio.sends()) == 1)
    to, body = twilio_bodies(twilio)[0]
    assert to == f"whatsapp:{PHONE}"
    local = appointment(aid).starts_at.astimezone(SP)
    assert body == f"Sua presença foi confirmada! Consulta {local:%d/%m/%Y} às 14:30. Até lá!"
    # A command: no auto-acknowledgement besides the confirmation.
    assert [m.template for m in outbound()] == ["confirmacao_presenca"]
    assert appointment(aid).version == 1  # reminders stay valid


def test_quick_reply_payload_confirms_the_named_appointment(client, worker, cfg) -> None:
    nearest = book(cfg, "ext-near", days=2)
    later = book(cfg, "ext-later", days=5)
    reply(client, "Confirmar presença", channel="whatsapp", metadata={"button_payload": f"CONFIRM_{later}"})
    wait_for(lambda: appointment(later).status == "confirmed")
    assert appointment(nearest).status == "scheduled"


def team_alert_sent() -> Message | None:
    alerts = outbound(template="pedido_paciente")
    return alerts[0] if alerts and alerts[0].status in ("sent", "delivered") else None


def test_nao_is_a_reschedule_request_for_the_team(client, worker, smtp, cfg) -> None:
    aid = book(cfg)
    reply(client, "Não")
    alert = wait_for(team_alert_sent)
    assert alert.channel == "email" and alert.to_address == SUPORTE and alert.purpose == "alert"
    wait_for(lambda: smtp.received)
    mail = smtp.received[0]
    assert mail.rcpt_tos == [SUPORTE]
    assert "remarcar" in mail.message["Subject"]
    text = mail.message.get_body(("plain",)).get_content()
    assert "Maria" in text and str(aid) in text and '"Não"' in text
    with session_scope() as s:
        conv = s.scalar(select(Conversation))
        assert conv.needs_agent is True
    assert appointment(aid).status == "scheduled"
    # The team's e-mail, and the patient is told it was received.
    assert [(m.purpose, m.template) for m in outbound()] == [
        ("alert", "pedido_paciente"), ("auto_reply", "remarcacao_recebida")]


def test_cancelar_is_a_request_not_an_opt_out(client, worker, smtp, twilio, cfg) -> None:
    """PATIENT_CANCEL_MODE=request (the default): the team is told, the
    appointment stays, the patient hears the request was received (direct
    mode: tests/integration/test_answers.py)."""
    aid = book(cfg)
    reply(client, "CANCELAR")
    wait_for(lambda: smtp.received)
    assert "cancelar" in smtp.received[0].message["Subject"]
    with session_scope() as s:
        assert s.scalar(select(OptOut)) is None
    wait_for(lambda: len(twilio.sends()) == 1)
    to, body = twilio_bodies(twilio)[0]
    assert to == PHONE and body.startswith("Recebemos seu pedido de cancelamento da consulta")
    assert appointment(aid).status == "scheduled"
    with session_scope() as s:
        pending = s.scalars(select(ScheduledMessage.status).where(
            ScheduledMessage.appointment_id == aid, ScheduledMessage.kind == "reminder_1h")).one()
    assert pending == "pending"


def test_three_is_a_cancel_request_too(client, worker, smtp, cfg) -> None:
    aid = book(cfg)
    reply(client, "3")
    wait_for(lambda: smtp.received)
    assert "cancelar" in smtp.received[0].message["Subject"]
    assert appointment(aid).status == "scheduled"


def test_opt_out_is_confirmed_once_and_skips_later_reminders(client, worker, twilio, cfg) -> None:
    aid = book(cfg)
    reply(client, "PARAR")
    wait_for(lambda: len(twilio.sends()) == 1)
    with session_scope() as s:
        opt = s.scalar(select(OptOut))
        assert (opt.channel, opt.keyword, opt.source) == ("sms", "PARAR", "reply")
    to, body = twilio_bodies(twilio)[0]
    assert to == PHONE and "não receberá mais mensagens por SMS" in body

    # Said twice: recorded once, confirmed once.
    second = reply(client, " parar ")
    wait_for(lambda: len(outbound()) >= 1 and _reacted(second))
    with session_scope() as s:
        assert len(s.scalars(select(OptOut)).all()) == 1
    assert len(outbound(template="optout_confirmacao")) == 1

    # Later, both reminders come due: SMS skipped, WhatsApp still sent.
    with session_scope() as s:
        s.execute(
            update(ScheduledMessage)
            .where(ScheduledMessage.appointment_id == aid)
            .values(due_at=datetime.now(UTC) - timedelta(seconds=1))
        )
    run_tick(cfg)
    wait_for(lambda: any(m.status in ("sent", "delivered") for m in outbound(template="lembrete_consulta")))
    sms_reminders = outbound(template="lembrete")
    assert [(m.status, m.status_reason) for m in sms_reminders] == [("skipped", "recipient opted out of sms")]
    with session_scope() as s:
        row = s.scalar(select(ScheduledMessage).where(ScheduledMessage.kind == "reminder_24h"))
        assert row.status == "skipped" and "opted out" in row.reason
    sms_sends = [b for to, b in twilio_bodies(twilio) if not to.startswith("whatsapp:")]
    assert len(sms_sends) == 1  # only the opt-out confirmation, ever


def _reacted(inbound_id: str) -> bool:
    """The reaction ran for this inbound message (triage stored by automations)."""
    with session_scope() as s:
        msg = s.get(Message, uuid.UUID(inbound_id))
        return msg is not None and msg.triage is not None


def test_opt_out_is_honoured_by_a_reminder_already_queued(client, worker, twilio, cfg) -> None:
    """The reminder was created before the patient said SAIR; the send worker
    re-checks and skips it."""
    aid = book(cfg)
    with session_scope() as s:
        s.execute(
            update(ScheduledMessage)
            .where(ScheduledMessage.appointment_id == aid, ScheduledMessage.kind == "reminder_24h")
            .values(due_at=datetime.now(UTC) - timedelta(seconds=1))
        )
    with session_scope() as s:
        batch = claim_batch(s, cfg, datetime.now(UTC), 100)
    reminders = [(mid, ch) for mid, ch in batch.to_enqueue if ch == "sms"]
    assert len(reminders) == 2  # confirmation_sms + reminder_24h, not enqueued yet
    reply(client, "sair")
    wait_for(lambda: len(twilio.sends()) == 1)  # the opt-out confirmation
    for mid, channel in reminders:
        enqueue_send(mid, channel)
    wait_for(lambda: all(m.status == "skipped" for m in outbound(template="lembrete")))
    wait_for(lambda: all(m.status == "skipped" for m in outbound(template="confirmacao")))
    assert len([r for r in twilio.sends() if not r.form.get("To", "").startswith("whatsapp:")]) == 1


def test_reply_with_no_upcoming_appointment_is_left_to_triage(client, worker, cfg) -> None:
    inbound = reply(client, "1")
    wait_for(lambda: _reacted(inbound))
    assert outbound(template="confirmacao_presenca") == []


def test_reschedule_after_claim_the_send_worker_skips_the_stale_reminder(client, worker, twilio, cfg) -> None:
    """Race end to end: the scheduler created the version-1 reminder, then the
    clinic moved the visit before the send worker got to it."""
    from shared.scheduling.appointments import change_appointment

    aid = book(cfg)
    with session_scope() as s:
        s.execute(
            update(ScheduledMessage)
            .where(ScheduledMessage.appointment_id == aid, ScheduledMessage.kind == "reminder_1h")
            .values(due_at=datetime.now(UTC) - timedelta(seconds=1))
        )
        s.execute(
            update(ScheduledMessage)
            .where(ScheduledMessage.appointment_id == aid, ScheduledMessage.kind != "reminder_1h")
            .values(status="cancelled")
        )
    with session_scope() as s:
        batch = claim_batch(s, cfg, datetime.now(UTC), 100)
    assert [ch for _, ch in batch.to_enqueue] == ["whatsapp"]
    new_start = appointment(aid).starts_at + timedelta(days=1)
    with session_scope() as s:
        change_appointment(s, aid, {"starts_at": new_start.isoformat()}, cfg)
    for mid, channel in batch.to_enqueue:
        enqueue_send(mid, channel)
    (stale,) = wait_for(lambda: [m for m in outbound(template="lembrete_consulta") if m.status == "skipped"])
    assert "version 1 → 2" in stale.status_reason
    time.sleep(0.5)
    assert twilio.sends() == []
    with session_scope() as s:
        row = s.scalar(select(ScheduledMessage).where(ScheduledMessage.kind == "reminder_1h"))
        assert row.status == "pending" and row.appointment_version == 2


def test_booking_through_the_api_sends_the_confirmations(client, worker, twilio, smtp, cfg) -> None:
    """Seed flow step 5: booked → email confirmation + SMS confirmation, then
    the patient confirms by replying 1."""
    from ingest.api.auth import generate_api_key, hash_api_key
    from ingest.app import create_app
    from shared.core.models import ApiKey

    api = create_app(cfg).test_client()  # same settings as the tick (no quiet hours)
    key = generate_api_key()
    with session_scope() as s:
        s.add(ApiKey(name="agenda", key_hash=hash_api_key(key), scopes=["intake"]))
    day = (datetime.now(SP) + timedelta(days=4)).date()
    body = {
        "external_id": "agenda-77",
        "contact": {"name": "Maria", "phone": PHONE, "email": "maria@example.com"},
        "professional": "Ana Souza",
        "starts_at": datetime(day.year, day.month, day.day, 9, 15, tzinfo=SP).isoformat(),
        "address": "Av. Paulista, 1000",
    }
    resp = api.post(
        "/api/appointments",
        data=dumps(body),
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )
    assert resp.status_code == 201
    aid = uuid.UUID(resp.get_json()["id"])
    result = run_tick(cfg)
    assert result.enqueued == 2
    wait_for(lambda: len(twilio.sends()) == 1)
    to, sms = twilio_bodies(twilio)[0]
    assert to == PHONE
    assert sms.startswith(f"Portal Clinic: Sua consulta com Dr. Ana Souza foi agendada para {day:%d/%m/%Y} às 09:15.")
    wait_for(lambda: smtp.received)
    mail = smtp.received[0]
    assert mail.rcpt_tos == ["maria@example.com"]
    assert mail.message["Subject"] == f"Consulta agendada: {day:%d/%m/%Y} às 09:15"

    reply(client, "1")
    wait_for(lambda: appointment(aid).status == "confirmed")
    wait_for(lambda: len(twilio.sends()) == 2)
    assert "Sua presença foi confirmada!" in twilio_bodies(twilio)[1][1]
