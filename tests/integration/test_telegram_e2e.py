"""Telegram end to end on real parts: updates posted to `/webhooks/telegram`
(authenticated by the secret token) → real inbound worker → triage,
acknowledgement, replies that act → the agent inbox (fake Chatwoot) → real
`telegram` send worker → FakeTelegram speaking the Bot API.

- A patient writes: one contact, triaged, acknowledged once on Telegram, in
  Chatwoot; the agent's reply goes back to the chat.
- The patient shares their own phone: the chat joins the patient the clinic
  already knows by that phone (verified by Telegram); someone else's card
  joins nobody.
- A tap on the reminder's inline button (`CONFIRM_<id>`) confirms that
  appointment; `/parar` opts out of Telegram and a later Telegram reminder
  is skipped.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import select, update

from scheduler.claim import run_tick
from shared.core.db import session_scope
from shared.core.models import (
    Appointment,
    Contact,
    ContactIdentity,
    MergeCandidate,
    Message,
    OptOut,
    ScheduledMessage,
)
from tests.fakes import FakeTelegram
from tests.fakes.chatwoot import FakeChatwoot
from tests.helpers import wait_for
from tests.integration.processes import WorkerProcess
from tests.integration.test_replies import SP, book
from tests.integration.test_telegram_webhook import (
    TELEGRAM_WEBHOOK_SECRET,
    callback_update,
    contact_update,
    telegram_request,
    text_update,
)
from tests.integration.test_webhook_contract import make_provider_client

CHAT = 123456789  # the patient's Telegram user (= private chat) id
STRANGER = 987654321
PHONE = "+5511987650001"  # the number the clinic knows the patient by (tests/test_replies.book)
PLAN = (
    "reminder_24h=telegram:lembrete_consulta@start-24h;"
    "reminder_1h=telegram:lembrete_consulta@start-1h"
)


@pytest.fixture(scope="module")
def telegram() -> Iterator[FakeTelegram]:
    with FakeTelegram() as fake:
        yield fake  # type: ignore[misc]


@pytest.fixture(scope="module")
def chatwoot() -> Iterator[FakeChatwoot]:
    fake = FakeChatwoot()
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def worker(
    tmp_path_factory: Any, telegram: FakeTelegram, chatwoot: FakeChatwoot
) -> Iterator[WorkerProcess]:
    env = {
        **telegram.env(),
        **chatwoot.env(),
        "TELEGRAM_WEBHOOK_SECRET": TELEGRAM_WEBHOOK_SECRET,
        "AUTO_ACK_ENABLED": "true",
        "QUIET_HOURS_CHANNELS": "",
        "RATE_LIMIT_TELEGRAM_CHAT": "20/second",
        "RATE_LIMIT_SMS": "1000/second",
        "RATE_LIMIT_EMAIL": "1000/second",
    }
    log = Path(tmp_path_factory.mktemp("w")) / "telegram-worker.log"
    proc = WorkerProcess("inbound,inbox,telegram,sms,email", 2, log, env)
    proc.wait_ready()
    yield proc
    proc.stop()


@pytest.fixture(autouse=True)
def reset_fake(telegram: FakeTelegram) -> None:
    with telegram.lock:
        telegram.requests.clear()
        telegram.plan.clear()


@pytest.fixture
def cfg(settings: Any, chatwoot: FakeChatwoot) -> Any:
    return settings.model_copy(update={
        "QUIET_HOURS_CHANNELS": [],
        "SCHEDULE_PLAN": PLAN,
        "TELEGRAM_WEBHOOK_SECRET": TELEGRAM_WEBHOOK_SECRET,
        "CHATWOOT_WEBHOOK_TOKEN": "cw-webhook-secret",
    })


@pytest.fixture
def client(cfg: Any) -> Any:
    return make_provider_client(cfg)


def post(client: Any, doc: dict[str, Any]) -> Any:
    req = telegram_request(doc)
    resp = client.post("/webhooks/telegram", data=req.body, headers=req.headers)
    assert resp.status_code == 200, resp.get_data(as_text=True)
    return resp


def filed(update_id: int) -> Message:
    def find() -> Message | None:
        with session_scope() as s:
            return s.scalar(select(Message).where(
                Message.idempotency_key == f"telegram:{update_id}"))
    return wait_for(find, timeout=60)


def outbound(**where: Any) -> list[Message]:
    with session_scope() as s:
        q = select(Message).where(Message.direction == "outbound")
        for key, value in where.items():
            q = q.where(getattr(Message, key) == value)
        return list(s.scalars(q.order_by(Message.created_at)))


def texts_to(telegram: FakeTelegram, chat: int) -> list[str]:
    return [r.json["text"] for r in telegram.sends_to(chat)]


def identities(contact_id: uuid.UUID) -> dict[str, tuple[str, str | None]]:
    with session_scope() as s:
        return {
            row.kind: (row.value, row.verified_via)
            for row in s.scalars(select(ContactIdentity)
                                 .where(ContactIdentity.contact_id == contact_id))
        }


def test_patient_writes_is_acknowledged_once_and_the_agent_answers_on_telegram(
    client: Any, worker: WorkerProcess, telegram: FakeTelegram, chatwoot: FakeChatwoot
) -> None:
    text = "Oi, queria agendar uma avaliação para clareamento"
    first = text_update(text, user_id=CHAT)
    post(client, first)
    # Acknowledged on Telegram; posted to Chatwoot.
    wait_for(lambda: any("Recebemos sua mensagem" in t for t in texts_to(telegram, CHAT)),
             timeout=90)

    def conversation() -> Any:
        with chatwoot.lock:
            return next((c for c in chatwoot.conversations.values()
                         if any(m["content"] == text for m in c.messages)), None)

    conv = wait_for(conversation, timeout=90)
    inbound = filed(first["update_id"])
    assert inbound.channel == "telegram" and inbound.sender_verified
    assert identities(inbound.contact_id) == {"telegram": (str(CHAT), "telegram"),
                                              "chatwoot": identities(inbound.contact_id)["chatwoot"]}
    with session_scope() as s:
        assert s.get(Contact, inbound.contact_id).name == "Ana Souza"
    wait_for(lambda: filed(first["update_id"]).triage, timeout=60)

    # The same update again (Telegram redelivers) and a second message: no second ack.
    post(client, first)
    second = text_update("tem horário sábado?", user_id=CHAT)
    post(client, second)
    wait_for(lambda: filed(second["update_id"]).triage, timeout=60)
    def posted() -> list[str]:
        with chatwoot.lock:
            return [m["content"] for m in conv.messages if m["message_type"] == 0]

    wait_for(lambda: len(posted()) == 2, timeout=60)
    acks = outbound(purpose="auto_reply")
    assert len(acks) == 1 and acks[0].channel == "telegram" and acks[0].to_address == str(CHAT)
    assert sum("Recebemos sua mensagem" in t for t in texts_to(telegram, CHAT)) == 1
    with session_scope() as s:
        assert s.scalar(select(Message.id).where(
            Message.idempotency_key == f"telegram:{first['update_id']}")) is not None
        assert len(s.scalars(select(Message).where(Message.direction == "inbound")).all()) == 2

    # The agent answers in Chatwoot: it goes back to the chat.
    answer = "Olá Ana! Temos sábado às 9h, pode ser?"
    doc = chatwoot.message_created(conv.id, answer, message_id=880001)
    resp = client.post("/webhooks/chatwoot?token=cw-webhook-secret", data=orjson.dumps(doc),
                       headers={"Content-Type": "application/json"})
    assert resp.status_code == 200
    wait_for(lambda: answer in texts_to(telegram, CHAT), timeout=90)
    (reply,) = wait_for(lambda: [m for m in outbound(purpose="agent_reply")
                                 if m.status == "sent"], timeout=30)
    assert (reply.channel, reply.to_address, reply.provider) == ("telegram", str(CHAT),
                                                                 "telegram_bot")
    # No delivery receipts on Telegram: a successful sendMessage is `sent`.
    assert reply.provider_message_id.startswith(f"{CHAT}:")


def test_shared_phone_links_the_chat_and_buttons_and_parar_act(
    client: Any, worker: WorkerProcess, telegram: FakeTelegram, cfg: Any
) -> None:
    # The clinic knows the patient by phone (booking system: verified).
    first_visit = book(cfg, "ext-tg-0", days=10)
    with session_scope() as s:
        patient = s.get(Appointment, first_visit).contact_id
        rows = s.scalars(select(ScheduledMessage)
                         .where(ScheduledMessage.appointment_id == first_visit)).all()
        # No chat yet: the Telegram reminders of that booking are skipped.
        assert {r.status for r in rows} == {"skipped"}
        assert all("Telegram chat id" in (r.reason or "") for r in rows)

    # The patient opens the bot, then (once it answered) shares their own phone.
    # Posted back to back, two inbound workers may file both at once, and the
    # share then races the contact /start creates: the chat ends up a merge
    # candidate instead of linked (safe, never a wrong merge, but not this test).
    start = text_update("/start", user_id=CHAT)
    post(client, start)
    filed(start["update_id"])
    share = contact_update("5511987650001", CHAT, user_id=CHAT)
    post(client, share)
    shared = filed(share["update_id"])
    assert shared.contact_id == patient and shared.sender_verified
    assert identities(patient)["telegram"] == (str(CHAT), "telegram")
    assert identities(patient)["phone"][0] == PHONE
    with session_scope() as s:
        # The chat's own contact (made by /start) was merged into the patient.
        merged = s.scalars(select(Contact).where(Contact.merged_into_id == patient)).all()
        assert len(merged) == 1
        assert s.scalar(select(MergeCandidate.status)) in (None, "merged")
        assert all(m.contact_id == patient for m in s.scalars(
            select(Message).where(Message.channel == "telegram", Message.direction == "inbound")))

    # Someone else shares the patient's card: joins nobody.
    card = contact_update("+5511987650001", CHAT, user_id=STRANGER, first="Maria")
    post(client, card)
    other = filed(card["update_id"])
    assert other.contact_id != patient and not other.metadata_["shared_contact"]["own"]
    assert set(identities(other.contact_id)) <= {"telegram", "chatwoot"}
    assert identities(other.contact_id)["telegram"][0] == str(STRANGER)
    assert [k for k, (v, _) in identities(patient).items() if v == str(STRANGER)] == []

    # Booked now: the patient has a chat, the Telegram reminders are pending.
    visit = book(cfg, "ext-tg-1", days=3)
    with session_scope() as s:
        assert s.get(Appointment, visit).contact_id == patient
        s.execute(update(ScheduledMessage)
                  .where(ScheduledMessage.appointment_id == visit,
                         ScheduledMessage.kind == "reminder_24h")
                  .values(due_at=datetime.now(UTC) - timedelta(seconds=1)))
    run_tick(cfg)
    (reminder,) = wait_for(lambda: [m for m in outbound(template="lembrete_consulta")
                                    if m.status == "sent"], timeout=60)
    assert (reminder.channel, reminder.to_address) == ("telegram", str(CHAT))
    sent = [r.json for r in telegram.sends_to(CHAT) if "Lembrete" in r.json["text"]]
    assert sent[-1]["reply_markup"] == {
        "inline_keyboard": [[{"text": "Confirmar", "callback_data": f"CONFIRM_{visit}"}]]}

    # The tap comes back as a callback query: it confirms the named appointment.
    tap = callback_update(f"CONFIRM_{visit}", user_id=CHAT)
    resp = post(client, tap)
    assert resp.get_json()["method"] == "answerCallbackQuery"
    wait_for(lambda: _status(visit) == "confirmed", timeout=60)
    assert _status(first_visit) == "scheduled"
    local = _starts(visit).astimezone(SP)
    wait_for(lambda: f"Sua presença foi confirmada! Consulta {local:%d/%m/%Y} às 14:30. Até lá!"
             in texts_to(telegram, CHAT), timeout=60)

    # /parar: opted out of Telegram (confirmed there once); the next reminder is skipped.
    stop = text_update("/parar", user_id=CHAT)
    post(client, stop)
    wait_for(lambda: any("não receberá mais mensagens por Telegram" in t
                         for t in texts_to(telegram, CHAT)), timeout=60)
    with session_scope() as s:
        opt = s.scalar(select(OptOut))
        assert (opt.contact_id, opt.channel, opt.keyword) == (patient, "telegram", "PARAR")
        s.execute(update(ScheduledMessage)
                  .where(ScheduledMessage.appointment_id == visit,
                         ScheduledMessage.kind == "reminder_1h")
                  .values(due_at=datetime.now(UTC) - timedelta(seconds=1)))
    before = len(telegram.sends_to(CHAT))
    run_tick(cfg)
    with session_scope() as s:
        row = s.scalar(select(ScheduledMessage).where(
            ScheduledMessage.appointment_id == visit, ScheduledMessage.kind == "reminder_1h"))
        assert row.status == "skipped" and "opted out" in (row.reason or "")
    assert len(telegram.sends_to(CHAT)) == before


def _status(aid: uuid.UUID) -> str:
    with session_scope() as s:
        return s.get(Appointment, aid).status


def _starts(aid: uuid.UUID) -> datetime:
    with session_scope() as s:
        return s.get(Appointment, aid).starts_at
