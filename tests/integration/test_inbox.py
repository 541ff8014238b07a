"""Agent-inbox bridge on real PostgreSQL/Redis against local fake Chatwoot and
Rocket.Chat servers: patient messages posted with triage labels, inbox
outages retried without loss, agent replies sent back on the patient's
channel (24-hour WhatsApp window → approved template or SMS + a note),
duplicates ignored, conversations closed; webhook authentication."""

from __future__ import annotations

import json
import shutil
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update

from shared.contacts.optouts import record_opt_out
from shared.core.config import get_settings
from shared.core.db import session_scope
from shared.core.models import ContactIdentity, Conversation, Message
from shared.inbound.filing import file_inbound_message
from shared.inbound.reactions import react_to_inbound
from shared.inbox.base import InboxUnavailable
from shared.inbox.sync import handle_inbox_event, post_patient_message
from tests.fakes.chatwoot import FakeChatwoot
from tests.fakes.rocketchat import FakeRocketChat
from tests.integration.test_webhook_contract import queued_tasks

PHONE = "+5511955554444"


@pytest.fixture
def chatwoot() -> Iterator[FakeChatwoot]:
    fake = FakeChatwoot()
    yield fake
    fake.stop()


@pytest.fixture
def rocketchat() -> Iterator[FakeRocketChat]:
    fake = FakeRocketChat()
    yield fake
    fake.stop()


@pytest.fixture
def configure(monkeypatch, redis_client) -> Iterator:
    redis_client.delete("whatsapp", "email", "sms", "inbox", "inbound")

    def apply(**env: str) -> None:
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        get_settings.cache_clear()

    yield apply
    monkeypatch.undo()
    get_settings.cache_clear()


def webhook_client():
    from ingest.app import create_app

    app = create_app(get_settings())
    app.testing = True
    return app.test_client()


def file_message(text: str, channel: str = "whatsapp", contact: dict | None = None) -> uuid.UUID:
    mid = uuid.uuid4()
    payload = {
        "type": "message",
        "channel": channel,
        "contact": contact or {"name": "Paula Ramos", "phone": PHONE},
        "message": {"text": text, "timestamp": None, "metadata": None},
        "received_at": datetime.now(UTC).isoformat(),
        "source": "webhook",
    }
    with session_scope() as s:
        file_inbound_message(s, str(mid), payload)
    return mid


def conversation_of(mid: uuid.UUID) -> Conversation:
    with session_scope() as s:
        return s.get(Conversation, s.get(Message, mid).conversation_id)


def agent_replies() -> list[Message]:
    with session_scope() as s:
        return list(s.scalars(select(Message).where(Message.purpose == "agent_reply")
                              .order_by(Message.created_at)))


# --- Chatwoot: patient → inbox -------------------------------------------------------


def test_patient_message_creates_contact_conversation_and_incoming_message(configure, chatwoot, redis_client) -> None:
    configure(**chatwoot.env())
    mid = file_message("to com febre depois da lipo")
    react_to_inbound(str(mid))  # triage + hand-off task on the inbox queue
    (task,) = queued_tasks(redis_client, "inbox")
    assert task.name == "clinicq.inbox.post_message" and task.args == [str(mid)]

    assert post_patient_message(str(mid)) == "posted"
    conv = chatwoot.only_conversation()
    (contact,) = chatwoot.contacts.values()
    assert contact["phone_number"] == PHONE and contact["name"] == "Paula Ramos"
    assert conv.messages == [{"id": conv.messages[0]["id"], "content": "to com febre depois da lipo",
                              "message_type": 0, "private": False}]
    assert "urgente" in conv.labels and "informacao_procedimento" in conv.labels
    assert "canal-whatsapp" in conv.labels
    ours = conversation_of(mid)
    assert (ours.inbox_provider, ours.inbox_conversation_id) == ("chatwoot", str(conv.id))
    with session_scope() as s:
        identity = s.scalar(select(ContactIdentity).where(ContactIdentity.kind == "chatwoot"))
        assert identity.value == str(contact["id"]) and identity.contact_id == ours.contact_id
    assert contact["identifier"] == str(ours.contact_id)

    # A retried task posts nothing twice; the next message joins the conversation.
    assert post_patient_message(str(mid)) == "already posted"
    second = file_message("qual o valor da consulta?")
    react_to_inbound(str(second))
    assert post_patient_message(str(second)) == "posted"
    assert len(chatwoot.contacts) == 1 and len(chatwoot.conversations) == 1
    assert [m["content"] for m in conv.messages][-1] == "qual o valor da consulta?"
    assert "preco" in conv.labels


def test_inbox_down_loses_nothing_and_recovers(configure, chatwoot) -> None:
    configure(**chatwoot.env())
    mid = file_message("oi, quero agendar")
    chatwoot.down = True
    with pytest.raises(InboxUnavailable):
        post_patient_message(str(mid))
    with session_scope() as s:
        assert s.scalar(select(ContactIdentity).where(ContactIdentity.kind == "chatwoot")) is None
    assert conversation_of(mid).inbox_conversation_id is None
    chatwoot.down = False
    assert post_patient_message(str(mid)) == "posted"
    assert len(chatwoot.only_conversation().messages) == 1


def test_existing_chatwoot_contact_is_found_not_duplicated(configure, chatwoot) -> None:
    configure(**chatwoot.env())
    # Made in Chatwoot by an agent earlier, with the same phone.
    chatwoot._create_contact({"name": "Paula", "phone_number": PHONE})
    mid = file_message("oi")
    assert post_patient_message(str(mid)) == "posted"
    assert len(chatwoot.contacts) == 1
    assert chatwoot.only_conversation().contact_id == next(iter(chatwoot.contacts))


def test_conversation_deleted_in_chatwoot_gets_a_new_one(configure, chatwoot) -> None:
    configure(**chatwoot.env())
    first = file_message("oi")
    post_patient_message(str(first))
    chatwoot.conversations.clear()
    second = file_message("alguem?")
    assert post_patient_message(str(second)) == "posted"
    conv = chatwoot.only_conversation()
    assert conversation_of(second).inbox_conversation_id == str(conv.id)


def test_inbox_task_retries_until_chatwoot_is_back(configure, chatwoot, celery_worker) -> None:
    configure(**chatwoot.env())
    mid = file_message("quero agendar avaliação")
    chatwoot.down = True
    celery_worker(queues="inbox", env=chatwoot.env())
    from workers.app import app

    app.send_task("clinicq.inbox.post_message", args=[str(mid)])
    from tests.helpers import wait_for

    wait_for(lambda: len(chatwoot.requests) >= 2, timeout=60)  # tried, failed, tried again
    chatwoot.down = False
    wait_for(lambda: len(chatwoot.conversations) == 1
             and len(chatwoot.only_conversation().messages) == 1, timeout=60)


# --- Chatwoot: agent → patient --------------------------------------------------------


def _posted_conversation(chatwoot: FakeChatwoot, text: str = "oi", **kw) -> tuple[uuid.UUID, int]:
    mid = file_message(text, **kw)
    post_patient_message(str(mid))
    return mid, chatwoot.only_conversation().id


def test_agent_reply_goes_to_the_patient_on_whatsapp_once(configure, chatwoot, redis_client) -> None:
    configure(**chatwoot.env())
    mid, cw_id = _posted_conversation(chatwoot)
    from shared.inbox.chatwoot import parse_chatwoot_webhook

    (event,) = parse_chatwoot_webhook(chatwoot.message_created(cw_id, "Olá Paula! Temos horário amanhã."))
    assert handle_inbox_event(event.to_dict()) == "queued"
    assert handle_inbox_event(event.to_dict()) == "duplicate"
    (reply,) = agent_replies()
    assert (reply.channel, reply.to_address, reply.text) == ("whatsapp", PHONE, "Olá Paula! Temos horário amanhã.")
    assert reply.conversation_id == conversation_of(mid).id
    assert reply.metadata_["agent"] == "Ana Atendente"
    assert [t.name for t in queued_tasks(redis_client, "whatsapp")] == ["clinicq.send.whatsapp"]
    assert conversation_of(mid).assignee == "Ana Atendente"


def test_whatsapp_reply_outside_window_falls_back_to_sms_and_tells_the_agent(configure, chatwoot, redis_client) -> None:
    # No approved template configured for agent replies: SMS is the way left.
    configure(**chatwoot.env(), INBOX_WHATSAPP_REPLY_TEMPLATE="sem_modelo_aprovado")
    mid, cw_id = _posted_conversation(chatwoot)
    with session_scope() as s:
        s.execute(update(Conversation).values(last_inbound_at=datetime.now(UTC) - timedelta(hours=30)))
    from shared.inbox.chatwoot import parse_chatwoot_webhook

    (event,) = parse_chatwoot_webhook(chatwoot.message_created(cw_id, "Tudo bem com a recuperação?"))
    handle_inbox_event(event.to_dict())
    (reply,) = agent_replies()
    assert (reply.channel, reply.to_address) == ("sms", PHONE)
    (note,) = queued_tasks(redis_client, "inbox")
    assert note.name == "clinicq.inbox.note"
    assert note.args[:2] == ["chatwoot", str(cw_id)] and "SMS" in note.args[2]

    from shared.inbox.sync import post_private_note

    post_private_note(*note.args)
    last = chatwoot.only_conversation().messages[-1]
    assert last["private"] is True and "24 h" in last["content"]


TWILIO_WHATSAPP = {"WHATSAPP_PROVIDER": "twilio", "TWILIO_ACCOUNT_SID": "AC" + "0" * 32,
                   "TWILIO_AUTH_TOKEN": "tok", "TWILIO_WHATSAPP_NUMBER": "+14155238886"}


@pytest.mark.parametrize(
    ("provider_env", "channel"),
    [
        ({}, "whatsapp"),  # Meta / outbox: templates.json is enough
        (TWILIO_WHATSAPP, "sms"),  # Twilio without a Content SID for it: SMS
        ({**TWILIO_WHATSAPP, "TWILIO_CONTENT_SIDS": "resposta_atendente=HX" + "1" * 32},
         "whatsapp"),
    ],
)
def test_whatsapp_reply_outside_window_uses_the_approved_template(
    configure, chatwoot, tmp_path: Path, provider_env, channel
) -> None:
    templates = tmp_path / "templates"
    shutil.copytree(Path(__file__).resolve().parents[2] / "shared" / "templates", templates)
    spec_path = templates / "whatsapp" / "templates.json"
    specs = json.loads(spec_path.read_text())
    specs["resposta_atendente"] = {"meta_name": "resposta_atendente", "language": "pt_BR",
                                   "params": ["paciente_nome", "resposta"], "buttons": []}
    spec_path.write_text(json.dumps(specs))
    configure(**chatwoot.env(), TEMPLATES_DIR=str(templates), **provider_env)
    mid, cw_id = _posted_conversation(chatwoot)
    with session_scope() as s:
        s.execute(update(Conversation).values(last_inbound_at=datetime.now(UTC) - timedelta(days=3)))
    from shared.inbox.chatwoot import parse_chatwoot_webhook

    (event,) = parse_chatwoot_webhook(chatwoot.message_created(cw_id, "Podemos remarcar?"))
    handle_inbox_event(event.to_dict())
    (reply,) = agent_replies()
    assert reply.channel == channel
    if channel == "whatsapp":
        assert reply.template == "resposta_atendente"
        assert reply.template_data == {"paciente_nome": "Paula", "resposta": "Podemos remarcar?"}
    else:
        assert reply.template is None and reply.text == "Podemos remarcar?"


def test_reply_to_opted_out_patient_is_skipped_and_the_agent_told(configure, chatwoot, redis_client) -> None:
    configure(**chatwoot.env())
    mid, cw_id = _posted_conversation(chatwoot)
    with session_scope() as s:
        record_opt_out(s, s.get(Message, mid).contact_id, "whatsapp", "SAIR", "test")
    from shared.inbox.chatwoot import parse_chatwoot_webhook

    (event,) = parse_chatwoot_webhook(chatwoot.message_created(cw_id, "Oi?"))
    assert handle_inbox_event(event.to_dict()) == "skipped"
    assert queued_tasks(redis_client, "whatsapp") == []
    (note,) = queued_tasks(redis_client, "inbox")
    assert "NÃO enviada" in note.args[2]


def test_email_conversation_is_answered_by_email(configure, chatwoot) -> None:
    configure(**chatwoot.env())
    _mid, cw_id = _posted_conversation(chatwoot, "Gostaria de um orçamento", channel="email",
                                       contact={"name": "Rui", "email": "rui@exemplo.com.br"})
    from shared.inbox.chatwoot import parse_chatwoot_webhook

    (event,) = parse_chatwoot_webhook(chatwoot.message_created(cw_id, "Segue o orçamento."))
    handle_inbox_event(event.to_dict())
    (reply,) = agent_replies()
    assert (reply.channel, reply.to_address) == ("email", "rui@exemplo.com.br")
    assert reply.subject


def test_incoming_private_and_empty_messages_are_not_replies(chatwoot) -> None:
    from shared.inbox.chatwoot import parse_chatwoot_webhook

    assert parse_chatwoot_webhook(chatwoot.message_created(1, "oi", message_type="incoming")) == []
    assert parse_chatwoot_webhook(chatwoot.message_created(1, "nota", private=True)) == []
    assert parse_chatwoot_webhook(chatwoot.message_created(1, "   ")) == []
    assert parse_chatwoot_webhook({"event": "conversation_created", "id": 1}) == []
    assert parse_chatwoot_webhook(chatwoot.status_changed(1, "pending")) == []


def test_resolved_in_chatwoot_closes_our_conversation(configure, chatwoot) -> None:
    configure(**chatwoot.env())
    mid, cw_id = _posted_conversation(chatwoot)
    from shared.inbox.chatwoot import parse_chatwoot_webhook

    (event,) = parse_chatwoot_webhook(chatwoot.status_changed(cw_id))
    assert handle_inbox_event(event.to_dict()) == "closed"
    conv = conversation_of(mid)
    assert conv.status == "closed" and conv.closed_at is not None
    assert handle_inbox_event(event.to_dict()) == "nothing to close"
    # The patient writes again: a new conversation here and in Chatwoot.
    again = file_message("voltei")
    post_patient_message(str(again))
    assert conversation_of(again).id != conv.id and len(chatwoot.conversations) == 2


# --- webhook authentication ---------------------------------------------------------------


def test_chatwoot_webhook_authentication(configure, chatwoot, redis_client) -> None:
    configure(**chatwoot.env())
    client = webhook_client()
    body = json.dumps(chatwoot.message_created(42, "Olá", message_id=901)).encode()
    headers = {"Content-Type": "application/json"}
    for url, extra in [
        ("/webhooks/chatwoot", {}),
        ("/webhooks/chatwoot?token=wrong", {}),
        ("/webhooks/chatwoot?token=cw-webhook-secret-but-longer", {}),
        ("/webhooks/chatwoot?token=", {}),
        ("/webhooks/chatwoot", {"X-Clinicq-Webhook-Token": "nope"}),
    ]:
        resp = client.post(url, data=body, headers={**headers, **extra})
        assert resp.status_code == 401, url
        assert resp.get_json()["field"] == "token"
    assert queued_tasks(redis_client, "inbox") == []

    ok = client.post("/webhooks/chatwoot?token=cw-webhook-secret", data=body, headers=headers)
    assert ok.status_code == 200 and ok.get_json() == {"accepted": 1, "duplicates": 0}
    again = client.post("/webhooks/chatwoot", data=body,
                        headers={**headers, "X-Clinicq-Webhook-Token": "cw-webhook-secret"})
    assert again.status_code == 200 and again.get_json() == {"accepted": 0, "duplicates": 1}
    (task,) = queued_tasks(redis_client, "inbox")
    assert task.name == "clinicq.inbox.event" and task.args[0]["event_id"] == "901"

    bad = client.post("/webhooks/chatwoot?token=cw-webhook-secret", data=b"{not json",
                      headers=headers)
    assert bad.status_code == 400 and bad.get_json()["field"] == "body"
    big = client.post("/webhooks/chatwoot?token=cw-webhook-secret", data=b"x" * (1024 * 1024),
                      headers=headers)
    assert big.status_code == 413


def test_webhooks_not_configured_answer_404(configure) -> None:
    configure(CHATWOOT_WEBHOOK_TOKEN="", ROCKETCHAT_LIVECHAT_TOKEN="")
    client = webhook_client()
    assert client.post("/webhooks/chatwoot?token=", data=b"{}").status_code == 404
    assert client.post("/webhooks/rocketchat", data=b"{}").status_code == 404


def test_rocketchat_webhook_authentication(configure, rocketchat, redis_client) -> None:
    configure(**rocketchat.env())
    client = webhook_client()
    body = json.dumps(rocketchat.agent_message("room1", "Olá!", "msgA")).encode()
    for headers in ({}, {"X-RocketChat-Livechat-Token": "forged"},
                    {"X-RocketChat-Livechat-Token": ""}):
        resp = client.post("/webhooks/rocketchat", data=body, headers=headers)
        assert resp.status_code == 401
    assert queued_tasks(redis_client, "inbox") == []
    good = {"X-RocketChat-Livechat-Token": rocketchat.LIVECHAT_TOKEN,
            "Content-Type": "application/json"}
    assert client.post("/webhooks/rocketchat", data=body, headers=good).get_json() == {
        "accepted": 1, "duplicates": 0}
    assert client.post("/webhooks/rocketchat", data=body, headers=good).get_json() == {
        "accepted": 0, "duplicates": 1}


# --- Rocket.Chat ------------------------------------------------------------------------------


def test_rocketchat_visitor_room_message_reply_and_close(configure, rocketchat, redis_client) -> None:
    configure(**rocketchat.env())
    mid = file_message("qto custa a rino?")
    react_to_inbound(str(mid))
    assert post_patient_message(str(mid)) == "posted"
    assert post_patient_message(str(mid)) == "already posted"
    room = rocketchat.only_room()
    ours = conversation_of(mid)
    # The visitor token is the contact's random inbox token, not its id.
    with session_scope() as s:
        from shared.core.models import Contact

        assert room.token == s.get(Contact, ours.contact_id).inbox_token
    assert str(ours.contact_id) not in room.token
    assert [m["msg"] for m in room.messages] == ["qto custa a rino?"]
    assert "preco" in room.tags
    assert rocketchat.visitors[room.token]["phone"] == PHONE
    assert (ours.inbox_provider, ours.inbox_conversation_id) == ("rocketchat", room.id)

    from shared.inbox.rocketchat import parse_rocketchat_webhook

    (event,) = parse_rocketchat_webhook(rocketchat.agent_message(room.id, "A rino custa…", "m1"),
                                        rocketchat.USER_ID)
    assert handle_inbox_event(event.to_dict()) == "queued"
    assert handle_inbox_event(event.to_dict()) == "duplicate"
    (reply,) = agent_replies()
    assert (reply.channel, reply.to_address, reply.text) == ("whatsapp", PHONE, "A rino custa…")

    (closed,) = parse_rocketchat_webhook(rocketchat.chat_closed(room.id), rocketchat.USER_ID)
    assert handle_inbox_event(closed.to_dict()) == "closed"
    room.open = False
    again = file_message("oi de novo")
    assert post_patient_message(str(again)) == "posted"
    assert len(rocketchat.rooms) == 2


def test_rocketchat_closed_room_reopens_and_visitor_and_bot_messages_are_ignored(configure, rocketchat) -> None:
    configure(**rocketchat.env())
    first = file_message("oi")
    post_patient_message(str(first))
    room = rocketchat.only_room()
    room.open = False  # closed by an agent; the close webhook never arrived
    second = file_message("alguem?")
    assert post_patient_message(str(second)) == "posted"
    assert conversation_of(second).inbox_conversation_id != room.id

    from shared.inbox.rocketchat import parse_rocketchat_webhook

    doc = rocketchat.agent_message(room.id, "x", "m9")
    visitor_msg = dict(doc["messages"][0], token=room.token, _id="m10")
    bot_msg = dict(doc["messages"][0], u={"_id": rocketchat.USER_ID}, _id="m11")
    system_msg = dict(doc["messages"][0], t="livechat-close", _id="m12")
    doc["messages"] = [visitor_msg, bot_msg, system_msg]
    assert parse_rocketchat_webhook(doc, rocketchat.USER_ID) == []
    assert parse_rocketchat_webhook({"type": "Message"}, rocketchat.USER_ID) == []


def test_rocketchat_lost_response_does_not_duplicate_the_message(configure, rocketchat) -> None:
    configure(**rocketchat.env())
    mid = file_message("oi")
    from shared.inbox.rocketchat import message_key

    # The first attempt reached Rocket.Chat but its answer was lost.
    post_patient_message(str(mid))
    with session_scope() as s:
        from shared.core.models import ProcessedEvent

        s.execute(ProcessedEvent.__table__.delete())
    assert post_patient_message(str(mid)) == "posted"
    room = rocketchat.only_room()
    assert [m["_id"] for m in room.messages] == [message_key(str(mid))]


def test_reply_after_resolution_is_not_sent_as_whatsapp_free_text(configure, chatwoot) -> None:
    """Once closed here, the delivery engine no longer sees an open WhatsApp
    window for the conversation: the reply goes as the approved template
    (never as free text, which WhatsApp would refuse), or by SMS without one."""
    configure(**chatwoot.env())
    _mid, cw_id = _posted_conversation(chatwoot)
    from shared.inbox.chatwoot import parse_chatwoot_webhook

    (resolved,) = parse_chatwoot_webhook(chatwoot.status_changed(cw_id))
    handle_inbox_event(resolved.to_dict())
    (event,) = parse_chatwoot_webhook(chatwoot.message_created(cw_id, "Esqueci de dizer: traga exames."))
    handle_inbox_event(event.to_dict())
    (reply,) = agent_replies()
    assert (reply.channel, reply.template) == ("whatsapp", "resposta_atendente")
    assert reply.template_data["resposta"] == "Esqueci de dizer: traga exames."


def test_agent_attachments_are_not_lost_silently(configure, chatwoot, redis_client) -> None:
    configure(**chatwoot.env())
    _mid, cw_id = _posted_conversation(chatwoot)
    from shared.inbox.chatwoot import parse_chatwoot_webhook

    only_file = chatwoot.message_created(cw_id, "")
    only_file["content"] = None
    only_file["attachments"] = [{"id": 1, "file_type": "image", "data_url": "https://cw/x.jpg"}]
    (event,) = parse_chatwoot_webhook(only_file)
    assert handle_inbox_event(event.to_dict()) == "not sent"
    assert agent_replies() == []
    with_text = chatwoot.message_created(cw_id, "Segue a foto do orçamento")
    with_text["attachments"] = [{"id": 2, "file_type": "file"}]
    (event,) = parse_chatwoot_webhook(with_text)
    handle_inbox_event(event.to_dict())
    assert [r.text for r in agent_replies()] == ["Segue a foto do orçamento"]
    notes = [t.args[2] for t in queued_tasks(redis_client, "inbox") if t.name == "clinicq.inbox.note"]
    assert len(notes) == 2 and all("Anexos" in n for n in notes)


def test_rocketchat_agent_file_is_reported_to_the_agent(rocketchat) -> None:
    from shared.inbox.rocketchat import parse_rocketchat_webhook

    doc = rocketchat.agent_message("room1", "", "mf1")
    doc["messages"][0]["file"] = {"_id": "f1", "name": "exame.pdf", "type": "application/pdf"}
    (event,) = parse_rocketchat_webhook(doc, rocketchat.USER_ID)
    assert event.attachments == 1 and event.text == ""


def test_labels_agents_added_survive_and_the_lead_score_is_updated(configure, chatwoot, rocketchat) -> None:
    from shared.inbox.base import merge_labels

    assert merge_labels(["vip", "lead-warm", "preco"], ["preco", "agendamento", "lead-hot"]) == [
        "vip", "preco", "agendamento", "lead-hot"]

    configure(**chatwoot.env())
    first = file_message("qual o valor da lipo?")
    react_to_inbound(str(first))
    post_patient_message(str(first))
    conv = chatwoot.only_conversation()
    conv.labels.append("vip")  # an agent's own label
    second = file_message("quero agendar pra sabado")
    react_to_inbound(str(second))
    post_patient_message(str(second))
    assert "vip" in conv.labels and {"preco", "agendamento"} <= set(conv.labels)
    assert len([label for label in conv.labels if label.startswith("lead-")]) == 1

    configure(**rocketchat.env())  # the same on Rocket.Chat (room tags)
    third = file_message("qto custa o botox?")
    react_to_inbound(str(third))
    post_patient_message(str(third))
    room = rocketchat.only_room()
    room.tags.append("retorno")
    fourth = file_message("tem horario amanha?")
    react_to_inbound(str(fourth))
    post_patient_message(str(fourth))
    assert "retorno" in room.tags and "agendamento" in room.tags


def test_failed_agent_reply_is_reported_to_the_agent_once(configure, chatwoot, redis_client) -> None:
    from shared.inbox.chatwoot import parse_chatwoot_webhook
    from shared.inbox.sync import post_private_note, report_failed_agent_replies

    configure(**chatwoot.env())
    _mid, cw_id = _posted_conversation(chatwoot)
    (event,) = parse_chatwoot_webhook(chatwoot.message_created(cw_id, "Olá!"))
    handle_inbox_event(event.to_dict())
    assert report_failed_agent_replies() == 0  # queued, not failed
    with session_scope() as s:
        s.execute(update(Message).where(Message.purpose == "agent_reply")
                  .values(status="failed", error_code="131026"))
    assert report_failed_agent_replies() == 1
    assert report_failed_agent_replies() == 0
    (note,) = [t for t in queued_tasks(redis_client, "inbox") if t.name == "clinicq.inbox.note"]
    post_private_note(*note.args)
    last = chatwoot.only_conversation().messages[-1]
    assert last["private"] and "NÃO entregue" in last["content"] and "131026" in last["content"]


@pytest.mark.parametrize("garbage", ["", "x", "é" * 10, "A" * 5000, "rc-livechat-secret ", " "])
def test_garbage_tokens_are_4xx_never_5xx(configure, chatwoot, rocketchat, redis_client, garbage) -> None:
    configure(**chatwoot.env(), ROCKETCHAT_LIVECHAT_TOKEN=rocketchat.LIVECHAT_TOKEN)
    client = webhook_client()
    header = garbage.encode("utf-8").decode("latin-1")
    rc = client.post("/webhooks/rocketchat", data=b"{}",
                     headers={"X-RocketChat-Livechat-Token": header})
    cw = client.post("/webhooks/chatwoot", query_string={"token": garbage}, data=b"{}")
    cw_header = client.post("/webhooks/chatwoot", data=b"{}",
                            headers={"X-Clinicq-Webhook-Token": header})
    assert rc.status_code == cw.status_code == cw_header.status_code == 401
    assert queued_tasks(redis_client, "inbox") == []
