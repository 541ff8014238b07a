"""Web chat end to end on real parts, for each agent inbox's own widget
(a Chatwoot website inbox, a Rocket.Chat Livechat room):

a site visitor writes in the widget → the inbox's authenticated webhook →
real inbound worker → filed as channel `webchat` under a contact named by
the inbox's visitor id (the typed e-mail unverified) → triaged; an emergency
pages the on-call phone and the safety reply is posted into the widget
conversation (by the real inbox worker, into the local fake inbox) → the
visitor's message is NOT posted back into the inbox → an agent's reply in the
widget is NOT sent anywhere else. A typed e-mail that is an existing
patient's does not join the visitor to that patient (merge candidate).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select

from shared.core.config import get_settings
from shared.core.db import session_scope
from shared.core.models import (
    Contact,
    ContactIdentity,
    Conversation,
    MergeCandidate,
    Message,
    ProcessedEvent,
)
from tests.fakes.chatwoot import FakeChatwoot, open_widget_conversation, widget_message_created
from tests.fakes.rocketchat import FakeRocketChat, open_widget_room, visitor_message
from tests.helpers import wait_for

ONCALL = "+5511977776666"
VISITOR_EMAIL = "carla.visitante@example.com"


class Widget:
    """One adapter per inbox: open a widget chat, write as the visitor, answer as an agent."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.fake: Any = FakeChatwoot() if kind == "chatwoot" else FakeRocketChat()
        self.chat: Any = None
        self._n = 0

    def open(self, name: str, email: str | None) -> None:
        if self.kind == "chatwoot":
            self.chat = open_widget_conversation(self.fake, name, email)
        else:
            self.chat = open_widget_room(self.fake, name, email)

    @property
    def remote_id(self) -> str:
        return str(self.chat.id)

    def _post(self, client: Any, doc: dict[str, Any]) -> Any:
        if self.kind == "chatwoot":
            return client.post("/webhooks/chatwoot?token=cw-webhook-secret", data=json.dumps(doc),
                               headers={"Content-Type": "application/json"})
        return client.post("/webhooks/rocketchat", data=json.dumps(doc),
                           headers={"Content-Type": "application/json",
                                    "X-RocketChat-Livechat-Token": self.fake.LIVECHAT_TOKEN})

    def visitor_writes(self, client: Any, text: str) -> dict[str, Any]:
        self._n += 1
        if self.kind == "chatwoot":
            doc = widget_message_created(self.fake, self.chat, text, message_id=880000 + self._n)
        else:
            doc = visitor_message(self.fake, self.chat, text, f"visitorMsg{self._n}")
        resp = self._post(client, doc)
        assert resp.status_code == 200, resp.get_data()
        return doc

    def agent_replies(self, client: Any, text: str) -> None:
        if self.kind == "chatwoot":
            doc = widget_message_created(self.fake, self.chat, text, message_type="outgoing",
                                         message_id=990001)
        else:
            doc = self.fake.agent_message(self.chat.id, text, "agentMsg990001")
        assert self._post(client, doc).status_code == 200

    def posted_by_clinicq(self) -> list[tuple[str, Any]]:
        """Every write clinicq made to the inbox's API."""
        with self.fake.lock:
            return [(path, body) for method, path, body in self.fake.requests
                    if method == "POST"]

    def widget_lines(self) -> list[str]:
        with self.fake.lock:
            if self.kind == "chatwoot":
                return [m["content"] for m in self.chat.messages]
            return [m["msg"] for m in self.chat.messages]

    def labels(self) -> list[str]:
        with self.fake.lock:
            return list(self.chat.labels if self.kind == "chatwoot" else self.chat.tags)

    def stop(self) -> None:
        self.fake.stop()


@pytest.fixture(params=["chatwoot", "rocketchat"])
def widget(request) -> Iterator[Widget]:
    adapter = Widget(request.param)
    yield adapter
    adapter.stop()


@pytest.fixture
def stack(widget, monkeypatch, redis_client, celery_worker) -> Iterator[dict[str, Any]]:
    redis_client.delete("whatsapp", "email", "sms", "inbox", "inbound")
    env = {
        **widget.fake.env(),
        "AUTO_ACK_ENABLED": "true",
        "QUIET_HOURS_CHANNELS": "",
        "ONCALL_PHONE": ONCALL,
        "EMAIL_MEDICO": "medico@clinicateste.com.br",
        "EMAIL_SUPORTE": "suporte@clinicateste.com.br",
        "EMAIL_FINANCEIRO": "financeiro@clinicateste.com.br",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    from ingest.app import create_app

    app = create_app(get_settings())
    app.testing = True
    celery_worker(queues="inbound,inbox,whatsapp,sms,email", concurrency=3, env=env)
    yield {"client": app.test_client(), "widget": widget}
    monkeypatch.undo()
    get_settings.cache_clear()


def messages(**where: Any) -> list[Message]:
    with session_scope() as s:
        q = select(Message).order_by(Message.created_at)
        for name, value in where.items():
            q = q.where(getattr(Message, name) == value)
        return list(s.scalars(q))


def identities(contact_id: uuid.UUID) -> dict[str, bool]:
    with session_scope() as s:
        rows = s.scalars(select(ContactIdentity).where(ContactIdentity.contact_id == contact_id))
        return {f"{r.kind}={r.value}": r.verified_at is not None for r in rows}


def test_emergency_in_the_widget(stack) -> None:
    client, widget = stack["client"], stack["widget"]
    widget.open("Carla Visitante", VISITOR_EMAIL)
    doc = widget.visitor_writes(client, "dor no peito forte agora")
    # A repeated delivery of the same webhook changes nothing.
    assert widget._post(client, doc).status_code == 200

    wait_for(lambda: len(messages(to_address=ONCALL)) == 1, timeout=90)
    (inbound,) = messages(direction="inbound")
    assert inbound.channel == "webchat" and inbound.sender_verified is False
    assert inbound.triage["urgent"] and inbound.triage["urgency"] == "emergency"
    # The contact is the inbox's visitor; the typed e-mail is kept, unverified.
    visitor = widget.fake.contacts[widget.chat.contact_id]["id"] if widget.kind == "chatwoot" \
        else widget.fake.visitors[widget.chat.token]["_id"]
    assert identities(inbound.contact_id) == {
        f"webchat={widget.kind}:{visitor}": False, f"email={VISITOR_EMAIL}": False}
    with session_scope() as s:
        conversation = s.get(Conversation, inbound.conversation_id)
        assert (conversation.channel, conversation.inbox_provider,
                conversation.inbox_conversation_id) == ("webchat", widget.kind, widget.remote_id)
        assert conversation.needs_agent is True

    # The on-call doctor is paged by SMS.
    (page,) = messages(to_address=ONCALL)
    assert page.channel == "sms"
    wait_for(lambda: messages(to_address=ONCALL)[0].status in ("sent", "delivered"), timeout=60)

    # The safety reply is posted into the widget conversation, once.
    wait_for(lambda: [m.status for m in messages(direction="outbound", channel="webchat")]
             == ["sent"], timeout=90)
    (reply,) = messages(direction="outbound", channel="webchat")
    assert reply.purpose == "auto_reply" and reply.to_address == widget.remote_id
    assert reply.text in widget.widget_lines()
    # Nothing was sent to the address the visitor typed (unverified), no ack elsewhere.
    assert messages(to_address=VISITOR_EMAIL) == []
    assert {m.channel for m in messages(direction="outbound")} == {"sms", "webchat", "email"}
    assert {m.to_address for m in messages(direction="outbound", channel="email")} == {
        "medico@clinicateste.com.br"}

    # The widget conversation gets the triage labels.
    wait_for(lambda: {"urgente", "canal-webchat"} <= set(widget.labels()), timeout=60)

    # No echo: the visitor's words were never posted into the inbox by clinicq.
    writes = widget.posted_by_clinicq()
    assert all("dor no peito" not in json.dumps(body) for _, body in writes), writes
    assert not any(path.endswith("livechat/message") for path, _ in writes)
    assert widget.widget_lines().count("dor no peito forte agora") == 1

    if widget.kind == "chatwoot":
        # Chatwoot's webhook echoes our own post (`outgoing`): by the id we
        # recorded, or — when the echo beat the recording — by its text in this
        # conversation. Neither is an agent's answer: the conversation still
        # needs one.
        for echo_id in (int(reply.provider_message_id), 990000):
            echo = widget_message_created(widget.fake, widget.chat, reply.text,
                                          message_type="outgoing", message_id=echo_id)
            assert widget._post(client, echo).status_code == 200
        with session_scope() as s:
            wait_for(lambda: s.scalar(select(ProcessedEvent.event_id).where(
                ProcessedEvent.source == "chatwoot:message",
                ProcessedEvent.event_id == "990000")) is not None, timeout=60)
        assert _needs_agent(inbound.conversation_id)

    # An agent answers in the widget: answered there, never re-sent elsewhere.
    before = len(messages(direction="outbound"))
    widget.agent_replies(client, "Carla, ligue 192 agora. Estamos acompanhando.")
    with session_scope() as s:
        wait_for(lambda: s.scalar(select(ProcessedEvent.event_id).where(
            ProcessedEvent.source == f"{widget.kind}:message",
            ProcessedEvent.event_id.in_(["990001", "agentMsg990001"]))) is not None, timeout=60)
    wait_for(lambda: not _needs_agent(inbound.conversation_id), timeout=30)
    assert len(messages(direction="outbound")) == before
    assert messages(purpose="agent_reply") == []


def _needs_agent(conversation_id: uuid.UUID | None) -> bool:
    with session_scope() as s:
        conversation = s.get(Conversation, conversation_id)
        assert conversation is not None
        return bool(conversation.needs_agent)


def test_typed_email_of_a_patient_does_not_join_them(stack) -> None:
    client, widget = stack["client"], stack["widget"]
    patient_email = "ana.paciente@example.com"
    with session_scope() as s:
        from shared.inbound.filing import file_inbound_message

        patient = file_inbound_message(s, str(uuid.uuid4()), {
            "type": "message", "channel": "sms",
            "contact": {"name": "Ana Paciente", "phone": "+5511988887777",
                        "email": patient_email},
            "attested": [{"kind": "phone", "value": "+5511988887777", "via": "twilio"},
                         {"kind": "email", "value": patient_email, "via": "appointments"}],
            "message": {"text": "oi"}, "received_at": None, "source": "twilio"})
        assert patient is not None
    widget.open("Ana?", patient_email)
    widget.visitor_writes(client, "quanto custa a consulta com dermatologista?")
    wait_for(lambda: any(m.triage for m in messages(channel="webchat")), timeout=90)
    (inbound,) = messages(channel="webchat")
    # Filed under a contact of its own, not the patient's; a merge candidate.
    assert inbound.contact_id != patient.contact_id
    assert inbound.sender_verified is False
    assert f"email={patient_email}" not in identities(inbound.contact_id)
    assert identities(patient.contact_id) == {
        "phone=+5511988887777": True, f"email={patient_email}": True}
    with session_scope() as s:
        pair = s.scalars(select(MergeCandidate)).all()
        assert [(c.contact_id, c.other_contact_id) for c in pair] == [
            (patient.contact_id, inbound.contact_id)]
        assert s.get(Contact, inbound.contact_id).last_channel == "webchat"
    # A routine question: triaged, counted as a webchat message, no safety reply,
    # and nothing sent to the patient's verified addresses.
    assert not inbound.triage["urgent"]
    assert messages(direction="outbound", channel="webchat") == []
    assert [m for m in messages(direction="outbound")
            if m.to_address in ("+5511988887777", patient_email)] == []
