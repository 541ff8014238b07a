"""Messenger and Instagram Direct end to end, on real parts: signed `page` /
`instagram` webhooks on /webhooks/meta → the real inbound worker (contact by
PSID / IGSID, triage, auto-acknowledgement) → the fake Chatwoot → an agent's
reply → the real delivery worker → the fake Send API (tests/fakes/meta.py)
→ Meta's delivery / read events → status forward.

Also: Meta's messaging windows (an automated message outside the 24 hours
fails with the reason and no request reaches the fake; an agent's reply after
them goes with the HUMAN_AGENT tag, within 7 days only), SAIR on Messenger
(later Messenger sends skipped), and a quick reply's payload confirming an
appointment.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from shared.core.config import get_settings
from shared.core.db import session_scope
from shared.core.models import (
    Appointment,
    ContactIdentity,
    Message,
    MessageEvent,
    OptOut,
)
from shared.outbound.create import OutboundRequest, create_outbound_message, enqueue_send
from tests.fakes.chatwoot import FakeChatwoot
from tests.fakes.meta import INSTAGRAM_ACCOUNT_ID, PAGE_ID, FakeMeta
from tests.helpers import wait_for
from tests.integration.test_webhook_contract import META_APP_SECRET, meta_request

ONCALL = "+5511977776666"


def new_person_id() -> str:
    """A PSID / IGSID: Meta's are decimal strings of 16-17 digits."""
    return str(uuid.uuid4().int)[:17]


def new_mid() -> str:
    return "m_" + uuid.uuid4().hex


def _ms(at: datetime | None = None) -> int:
    return int((at or datetime.now(UTC)).timestamp() * 1000)


def dm_envelope(obj: str, *events: dict[str, Any]) -> dict[str, Any]:
    """Meta's body for object `page` (Messenger) or `instagram`."""
    account = PAGE_ID if obj == "page" else INSTAGRAM_ACCOUNT_ID
    return {
        "object": obj,
        "entry": [{"id": account, "time": _ms(), "messaging": list(events)}],
    }


def dm_message(
    person: str, text: str | None = "Oi", *, obj: str = "page", mid: str | None = None,
    quick_reply: str | None = None, attachments: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    account = PAGE_ID if obj == "page" else INSTAGRAM_ACCOUNT_ID
    message: dict[str, Any] = {"mid": mid or new_mid()}
    if text is not None:
        message["text"] = text
    if quick_reply is not None:
        message["quick_reply"] = {"payload": quick_reply}
    if attachments is not None:
        message["attachments"] = attachments
    return {
        "sender": {"id": person},
        "recipient": {"id": account},
        "timestamp": _ms(),
        "message": message,
    }


def wrote_on(contact_id: uuid.UUID, channel: str, minutes_ago: float) -> None:
    """The contact's last message on `channel` was `minutes_ago` minutes ago
    (what Meta's messaging windows count from)."""
    at = datetime.now(UTC) - timedelta(minutes=minutes_ago)
    with session_scope() as s:
        s.add(Message(
            id=uuid.uuid4(), contact_id=contact_id, channel=channel, direction="inbound",
            purpose="patient", text="oi", status="received", created_at=at, updated_at=at,
        ))


def messages(**where: Any) -> list[Message]:
    with session_scope() as s:
        q = select(Message).order_by(Message.created_at)
        for name, value in where.items():
            q = q.where(getattr(Message, name) == value)
        rows = list(s.scalars(q))
        for row in rows:
            s.expunge(row)
        return rows


def row(mid: uuid.UUID) -> Message:
    with session_scope() as s:
        found = s.get(Message, mid)
        assert found is not None
        s.expunge(found)
        return found


def texts_to(fake: FakeMeta, person: str) -> list[str]:
    return [r.json["message"]["text"] for r in fake.sends_to(person)]


@pytest.fixture
def stack(monkeypatch, redis_client, celery_worker) -> Iterator[dict[str, Any]]:
    redis_client.delete("messenger", "instagram", "email", "sms", "inbox", "inbound")
    fake, chatwoot = FakeMeta().start(), FakeChatwoot()
    env = {
        **fake.env(),
        **chatwoot.env(),
        "META_APP_SECRET": META_APP_SECRET,
        "AUTO_ACK_ENABLED": "true",
        "QUIET_HOURS_CHANNELS": "",
        "EMAIL_SUPORTE": "suporte@clinicateste.com.br",
        "EMAIL_MEDICO": "medico@clinicateste.com.br",
        "EMAIL_FINANCEIRO": "financeiro@clinicateste.com.br",
        "ONCALL_PHONE": ONCALL,
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    from ingest.app import create_app

    app = create_app(get_settings())
    app.testing = True
    celery_worker(queues="inbound,inbox,messenger,instagram,sms,email", concurrency=3, env=env)
    yield {"client": app.test_client(), "meta": fake, "chatwoot": chatwoot}
    fake.stop()
    chatwoot.stop()
    monkeypatch.undo()
    get_settings.cache_clear()


def post(client: Any, doc: dict[str, Any]) -> None:
    body, headers = meta_request(doc)
    resp = client.post("/webhooks/meta", data=body, headers=headers)
    assert resp.status_code == 200, resp.get_data()


def posted(chatwoot: FakeChatwoot) -> list[str]:
    with chatwoot.lock:
        return [m["content"] for c in chatwoot.conversations.values() for m in c.messages
                if m["message_type"] == 0]


def agent_reply(client: Any, chatwoot: FakeChatwoot, text: str, message_id: int) -> None:
    conv = chatwoot.only_conversation()
    doc = chatwoot.message_created(conv.id, text, message_id=message_id)
    resp = client.post("/webhooks/chatwoot?token=cw-webhook-secret", data=json.dumps(doc),
                       headers={"Content-Type": "application/json"})
    assert resp.status_code == 200, resp.get_data()


@pytest.mark.parametrize(("obj", "channel", "kind", "provider"), [
    ("page", "messenger", "psid", "meta_messenger"),
    ("instagram", "instagram", "igsid", "meta_instagram"),
])
def test_patient_writes_is_acknowledged_once_and_the_agent_answers_on_the_same_channel(
    stack, obj: str, channel: str, kind: str, provider: str
) -> None:
    client, fake, chatwoot = stack["client"], stack["meta"], stack["chatwoot"]
    person = new_person_id()
    first = dm_message(person, "Oi, quanto custa a consulta? queria agendar uma avaliação",
                       obj=obj)
    post(client, dm_envelope(obj, first))
    post(client, dm_envelope(obj, first))  # Meta retries: nothing more

    # Acknowledged on the channel, to the id that wrote, inside the window.
    wait_for(lambda: any("AGENDAR" in t for t in texts_to(fake, person)), timeout=90)
    ack = fake.sends_to(person)[0]
    assert ack.json["messaging_type"] == "RESPONSE" and "tag" not in ack.json
    assert fake.sender_of(ack) == (PAGE_ID if obj == "page" else INSTAGRAM_ACCOUNT_ID)
    wait_for(lambda: posted(chatwoot) == [first["message"]["text"]], timeout=90)
    (inbound,) = messages(direction="inbound", channel=channel)
    assert inbound.provider_message_id == first["message"]["mid"]
    assert inbound.sender_verified is True
    wait_for(lambda: bool(messages(direction="inbound", channel=channel)[0].triage), timeout=30)
    assert messages(direction="inbound", channel=channel)[0].triage["intent"] in (
        "preco", "agendamento")
    # One contact of its own, known by the attested id and nothing else.
    with session_scope() as s:
        identities = s.execute(select(ContactIdentity.kind, ContactIdentity.value,
                                      ContactIdentity.verified_via)
                               .where(ContactIdentity.contact_id == inbound.contact_id)
                               .where(ContactIdentity.kind == kind)).all()
    assert [(k, v, via) for k, v, via in identities] == [(kind, person, "meta")]

    # A second message in the window: in the inbox, no second acknowledgement.
    post(client, dm_envelope(obj, dm_message(person, "e aceita cartão?", obj=obj)))
    wait_for(lambda: len(posted(chatwoot)) == 2, timeout=90)
    wait_for(lambda: all(m.triage for m in messages(direction="inbound", channel=channel)),
             timeout=30)
    assert len(messages(purpose="auto_reply")) == 1
    assert sum("AGENDAR" in t for t in texts_to(fake, person)) == 1

    # The agent answers in Chatwoot: back on the same channel, to the same id.
    agent_reply(client, chatwoot, "Olá! A consulta custa R$ 300, em até 3x.", 880001)
    wait_for(lambda: "Olá! A consulta custa R$ 300, em até 3x." in texts_to(fake, person),
             timeout=90)
    (reply,) = messages(purpose="agent_reply")
    assert (reply.channel, reply.to_address) == (channel, person)
    wait_for(lambda: row(reply.id).status == "sent", timeout=30)
    reply = row(reply.id)
    assert reply.provider == provider and reply.provider_message_id.startswith("m_")

    # Meta's delivery and read events move it forward.
    if obj == "page":
        post(client, dm_envelope(obj, {
            "sender": {"id": person}, "recipient": {"id": PAGE_ID},
            "delivery": {"mids": [reply.provider_message_id], "watermark": _ms()},
        }))
        wait_for(lambda: row(reply.id).status == "delivered", timeout=60)
        # Messenger's read receipt is a watermark: all sent before it were read.
        read = {"sender": {"id": person}, "recipient": {"id": PAGE_ID}, "timestamp": _ms(),
                "read": {"watermark": _ms() + 1000}}
    else:
        read = {"sender": {"id": person}, "recipient": {"id": INSTAGRAM_ACCOUNT_ID},
                "timestamp": _ms(), "read": {"mid": reply.provider_message_id}}
    post(client, dm_envelope(obj, read))
    post(client, dm_envelope(obj, read))  # repeated: changes nothing more
    wait_for(lambda: row(reply.id).status == "read", timeout=60)
    assert row(reply.id).read_at is not None
    with session_scope() as s:
        moves = s.scalars(select(MessageEvent.status_to).where(
            MessageEvent.message_id == reply.id, MessageEvent.event == "meta_status")).all()
    assert list(moves) == (["delivered", "read"] if obj == "page" else ["read"])
    # The acknowledgement, sent before the watermark, was read too (Messenger).
    if obj == "page":
        (ack_row,) = messages(purpose="auto_reply")
        assert ack_row.status == "read"
    assert texts_to(fake, person).count("Olá! A consulta custa R$ 300, em até 3x.") == 1


def _contact_for(person: str, channel: str, kind: str, minutes_ago: float) -> uuid.UUID:
    from shared.contacts.directory import ContactDetails, find_or_create_contact

    with session_scope() as s:
        match = find_or_create_contact(s, ContactDetails(
            identities=[(kind, person)], source="meta", channel=channel,
            verified={(kind, person): "meta"}))
        contact_id = match.contact_id
    wrote_on(contact_id, channel, minutes_ago)
    return contact_id


def _send(channel: str, person: str, contact_id: uuid.UUID, purpose: str, text: str) -> uuid.UUID:
    with session_scope() as s:
        created = create_outbound_message(s, OutboundRequest(
            channel=channel, to_address=person, contact_id=contact_id, text=text,
            purpose=purpose))
    if created.should_enqueue:
        enqueue_send(created.message_id, channel)
    return created.message_id


@pytest.mark.parametrize("channel", ["messenger", "instagram"])
def test_meta_messaging_windows_are_enforced_before_any_call(stack, channel: str) -> None:
    fake = stack["meta"]
    kind = "psid" if channel == "messenger" else "igsid"

    # Last message 30 h ago: an automated message fails with the reason, no call.
    person = new_person_id()
    contact_id = _contact_for(person, channel, kind, minutes_ago=30 * 60)
    automated = _send(channel, person, contact_id, "reminder", "Lembrete: consulta amanhã")
    wait_for(lambda: row(automated).status == "failed", timeout=60)
    failed = row(automated)
    assert failed.error_code == "outside_window"
    assert "24-hour messaging window" in failed.status_reason
    # ... but an agent's reply goes, with the human-agent tag.
    reply = _send(channel, person, contact_id, "agent_reply", "Oi, aqui é a Bia da clínica")
    wait_for(lambda: row(reply).status == "sent", timeout=60)
    (call,) = fake.sends_to(person)
    assert call.json["messaging_type"] == "MESSAGE_TAG" and call.json["tag"] == "HUMAN_AGENT"
    assert call.json["message"]["text"] == "Oi, aqui é a Bia da clínica"

    # Last message 8 days ago: not even an agent's reply; nothing reaches Meta.
    late = new_person_id()
    late_contact = _contact_for(late, channel, kind, minutes_ago=8 * 24 * 60)
    too_late = _send(channel, late, late_contact, "agent_reply", "Oi, tudo bem?")
    wait_for(lambda: row(too_late).status == "failed", timeout=60)
    assert "human-agent window" in row(too_late).status_reason
    time.sleep(0.5)
    assert fake.sends_to(late) == []
    assert len(fake.sends_to(person)) == 1


def test_sair_on_messenger_skips_later_messenger_sends(stack) -> None:
    client, fake = stack["client"], stack["meta"]
    person = new_person_id()
    post(client, dm_envelope("page", dm_message(person, "SAIR")))
    wait_for(lambda: bool(messages(direction="inbound", channel="messenger")), timeout=60)
    (inbound,) = messages(direction="inbound", channel="messenger")

    def opted() -> list[str]:
        with session_scope() as s:
            return list(s.scalars(select(OptOut.channel).where(
                OptOut.contact_id == inbound.contact_id, OptOut.revoked_at.is_(None))))

    wait_for(lambda: opted() == ["messenger"], timeout=60)
    # Confirmed once, on Messenger; no acknowledgement besides it.
    wait_for(lambda: any("não receberá mais" in t for t in texts_to(fake, person)), timeout=60)
    later = _send("messenger", person, inbound.contact_id, "reminder", "Lembrete: consulta")
    wait_for(lambda: row(later).status == "skipped", timeout=60)
    assert "opted out of messenger" in (row(later).status_reason or "")
    time.sleep(0.5)
    assert len(fake.sends_to(person)) == 1


def test_reminder_quick_reply_tap_confirms_the_appointment(stack) -> None:
    client, fake = stack["client"], stack["meta"]
    person = new_person_id()
    contact_id = _contact_for(person, "messenger", "psid", minutes_ago=5)
    with session_scope() as s:
        appt = Appointment(external_id=f"ext-{uuid.uuid4().hex[:8]}", contact_id=contact_id,
                           starts_at=datetime.now(UTC) + timedelta(days=2),
                           timezone="America/Sao_Paulo", professional="Dra. Lia")
        s.add(appt)
        s.flush()
        appt_id = appt.id
    data = {"paciente_nome": "Ana", "data": "sexta", "horario": "14:00",
            "endereco": "Rua A, 1", "appointment_id": str(appt_id)}
    with session_scope() as s:
        created = create_outbound_message(s, OutboundRequest(
            channel="messenger", to_address=person, contact_id=contact_id,
            template="lembrete_consulta", template_data=data, purpose="reminder"))
    enqueue_send(created.message_id, "messenger")
    wait_for(lambda: len(fake.sends_to(person)) == 1, timeout=60)
    quick = fake.sends_to(person)[0].json["message"]["quick_replies"]
    assert quick == [
        {"content_type": "text", "title": "Confirmar", "payload": f"CONFIRM_{appt_id}"},
        {"content_type": "text", "title": "Remarcar", "payload": f"RESCHEDULE_{appt_id}"},
    ]

    # The patient taps "Confirmar": its payload reaches replies.py.
    post(client, dm_envelope("page", dm_message(person, "Confirmar",
                                                quick_reply=f"CONFIRM_{appt_id}")))

    def status() -> str:
        with session_scope() as s:
            found = s.get(Appointment, appt_id)
            assert found is not None
            return found.status

    wait_for(lambda: status() == "confirmed", timeout=60)
    tap = messages(direction="inbound", channel="messenger")[-1]
    assert tap.metadata_["button_payload"] == f"CONFIRM_{appt_id}"
    # Answered on Messenger.
    wait_for(lambda: any("confirmada" in t for t in texts_to(fake, person)), timeout=60)


def test_urgent_message_on_messenger_alerts_the_team_once(stack) -> None:
    client, chatwoot = stack["client"], stack["chatwoot"]
    person = new_person_id()
    post(client, dm_envelope("page", dm_message(
        person, "to com febre e sangrando muito depois da cirurgia")))
    wait_for(lambda: len(messages(to_address=ONCALL)) == 1, timeout=90)
    post(client, dm_envelope("page", dm_message(person, "por favor me responde, ta sangrando")))
    wait_for(lambda: len(posted(chatwoot)) == 2, timeout=90)
    wait_for(lambda: all(m.triage for m in messages(direction="inbound")), timeout=30)
    (oncall,) = messages(to_address=ONCALL)
    assert oncall.channel == "sms" and "febre" in oncall.text and "messenger" in oncall.text

    def labels() -> list[str]:
        with chatwoot.lock:
            return list(chatwoot.only_conversation().labels)

    wait_for(lambda: {"urgente", "canal-messenger"} <= set(labels()), timeout=30)
