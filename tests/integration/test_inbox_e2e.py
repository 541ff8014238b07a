"""End to end on real parts, for each agent inbox:

patient's WhatsApp message (signed Meta webhook) → real inbound worker →
triaged → acknowledged once (a second message in the window: no second ack)
→ posted to the inbox (local fake Chatwoot / Rocket.Chat) → an agent's reply
(the inbox's webhook, authenticated) → an outbound WhatsApp message created
and sent by the real delivery worker to a fake Graph API → Meta's status
webhook → delivered. Duplicate deliveries change nothing. An urgent message
reaches ONCALL_PHONE once.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select
from werkzeug import Request, Response

from shared.core.config import get_settings
from shared.core.db import session_scope
from shared.core.models import Contact, Message
from tests.fakes.chatwoot import FakeChatwoot
from tests.fakes.rocketchat import FakeRocketChat
from tests.helpers import wait_for
from tests.integration.test_meta_webhook import (
    PHONE_NUMBER_ID,
    change,
    envelope,
    status,
    text_message,
)
from tests.integration.test_webhook_contract import META_APP_SECRET, meta_request

WA_ID = "555499261407"  # no ninth digit, as WhatsApp sends it
PATIENT = "+5554999261407"
ONCALL = "+5511977776666"


class GraphApi:
    """The WhatsApp Cloud API's send endpoint (pytest-httpserver)."""

    def __init__(self, httpserver: Any) -> None:
        self.sent: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        httpserver.expect_request(f"/{PHONE_NUMBER_ID}/messages", method="POST").respond_with_handler(
            self._handle
        )
        self.base_url = httpserver.url_for("/").rstrip("/")

    def _handle(self, request: Request) -> Response:
        if request.headers.get("Authorization") != "Bearer graph-token":
            return Response(json.dumps({"error": {"code": 190}}), status=401)
        body = request.get_json()
        wamid = "wamid.OUT" + uuid.uuid4().hex.upper()
        with self.lock:
            self.sent.append({**body, "wamid": wamid})
        return Response(
            json.dumps({"messaging_product": "whatsapp",
                        "contacts": [{"input": body["to"], "wa_id": body["to"]}],
                        "messages": [{"id": wamid}]}),
            content_type="application/json",
        )

    def texts(self) -> list[str]:
        with self.lock:
            return [m["text"]["body"] for m in self.sent if m.get("type") == "text"]


class Inbox:
    """One adapter per inbox: start, read the posted messages, make an agent reply."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.fake = FakeChatwoot() if kind == "chatwoot" else FakeRocketChat()

    def env(self) -> dict[str, str]:
        return self.fake.env()

    def posted(self) -> list[str]:
        with self.fake.lock:
            if self.kind == "chatwoot":
                return [m["content"] for c in self.fake.conversations.values() for m in c.messages
                        if m["message_type"] == 0]
            return [m["msg"] for r in self.fake.rooms.values() for m in r.messages
                    if m.get("token")]

    def labels(self) -> list[str]:
        with self.fake.lock:
            if self.kind == "chatwoot":
                return self.fake.only_conversation().labels
            return self.fake.only_room().tags

    def agent_reply(self, client: Any, text: str) -> Any:
        if self.kind == "chatwoot":
            conv = self.fake.only_conversation()
            doc = self.fake.message_created(conv.id, text, message_id=777001)
            return client.post("/webhooks/chatwoot?token=cw-webhook-secret", data=json.dumps(doc),
                               headers={"Content-Type": "application/json"})
        room = self.fake.only_room()
        doc = self.fake.agent_message(room.id, text, "rcMsg777001")
        return client.post("/webhooks/rocketchat", data=json.dumps(doc),
                           headers={"Content-Type": "application/json",
                                    "X-RocketChat-Livechat-Token": self.fake.LIVECHAT_TOKEN})

    def forged_reply(self, client: Any) -> Any:
        if self.kind == "chatwoot":
            return client.post("/webhooks/chatwoot?token=guess", data=b"{}")
        return client.post("/webhooks/rocketchat", data=b"{}",
                           headers={"X-RocketChat-Livechat-Token": "guess"})

    def stop(self) -> None:
        self.fake.stop()


@pytest.fixture(params=["chatwoot", "rocketchat"])
def inbox(request) -> Iterator[Inbox]:
    adapter = Inbox(request.param)
    yield adapter
    adapter.stop()


@pytest.fixture
def stack(inbox, httpserver, monkeypatch, redis_client, celery_worker) -> Iterator[dict[str, Any]]:
    redis_client.delete("whatsapp", "email", "sms", "inbox", "inbound")
    graph = GraphApi(httpserver)
    env = {
        **inbox.env(),
        "META_APP_SECRET": META_APP_SECRET,
        "WHATSAPP_PROVIDER": "meta",
        "WHATSAPP_TOKEN": "graph-token",
        "WHATSAPP_PHONE_NUMBER_ID": PHONE_NUMBER_ID,
        "META_GRAPH_BASE_URL": graph.base_url,
        "RATE_LIMIT_WHATSAPP_PAIR": "20/second",
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
    yield {"client": app.test_client(), "graph": graph, "inbox": inbox}
    monkeypatch.undo()
    get_settings.cache_clear()


def patient_writes(client: Any, text: str) -> None:
    body, headers = meta_request(envelope(text_message(text, wa_id=WA_ID, name="Ana Souza")))
    resp = client.post("/webhooks/meta", data=body, headers=headers)
    assert resp.status_code == 200, resp.get_data()


def messages(**where: Any) -> list[Message]:
    with session_scope() as s:
        q = select(Message).order_by(Message.created_at)
        for name, value in where.items():
            q = q.where(getattr(Message, name) == value)
        return list(s.scalars(q))


def test_patient_to_agent_and_back(stack) -> None:
    client, graph, inbox = stack["client"], stack["graph"], stack["inbox"]
    # Known from an earlier SMS, by the number with the ninth digit.
    with session_scope() as s:
        from shared.inbound.filing import file_inbound_message

        file_inbound_message(s, str(uuid.uuid4()), {
            "type": "message", "channel": "sms", "contact": {"name": "Ana Souza", "phone": PATIENT},
            "message": {"text": "oi"}, "received_at": None, "source": "twilio"})
    patient_writes(client, "Oi, qto custa a lipo? queria agendar uma avaliação")

    # Triaged, acknowledged on WhatsApp (sent through the Graph API), in the inbox.
    wait_for(lambda: any("AGENDAR" in t for t in graph.texts()), timeout=90)
    wait_for(lambda: inbox.posted() == ["Oi, qto custa a lipo? queria agendar uma avaliação"],
             timeout=90)
    sms, first = messages(direction="inbound")
    assert first.channel == "whatsapp" and first.triage["intent"] in ("preco", "agendamento")
    assert first.contact_id == sms.contact_id  # one patient across the ninth-digit variant
    with session_scope() as s:
        assert s.get(Contact, first.contact_id).name == "Ana Souza"
    # Labels are set right after the message is posted.
    wait_for(lambda: set(inbox.labels()) >= {first.triage["intent"], "canal-whatsapp"}, timeout=30)

    # A second message in the window: in the inbox, but no second ack.
    patient_writes(client, "e parcela no cartão?")
    wait_for(lambda: len(inbox.posted()) == 2, timeout=90)
    wait_for(lambda: all(m.triage for m in messages(direction="inbound", channel="whatsapp")),
             timeout=30)
    assert len(messages(purpose="auto_reply")) == 1
    assert sum("AGENDAR" in t for t in graph.texts()) == 1

    # The agent answers in the inbox; a forged webhook is refused.
    assert inbox.forged_reply(client).status_code == 401
    assert inbox.agent_reply(client, "Olá Ana! A lipo parte de R$ 9.000, em até 10x.").status_code == 200
    wait_for(lambda: "Olá Ana! A lipo parte de R$ 9.000, em até 10x." in graph.texts(), timeout=90)
    (reply,) = messages(purpose="agent_reply")
    assert (reply.channel, reply.to_address) == ("whatsapp", PATIENT)
    wait_for(lambda: messages(purpose="agent_reply")[0].provider_message_id is not None, timeout=30)
    reply = messages(purpose="agent_reply")[0]
    assert reply.status == "sent" and reply.provider == "meta_whatsapp"

    # A duplicate delivery of the same agent message changes nothing.
    assert inbox.agent_reply(client, "Olá Ana! A lipo parte de R$ 9.000, em até 10x.").status_code == 200

    # Delivery status comes back from Meta.
    body, headers = meta_request(envelope(change({"statuses": [
        status(reply.provider_message_id, "delivered", recipient_id=WA_ID)]})))
    assert client.post("/webhooks/meta", data=body, headers=headers).status_code == 200
    wait_for(lambda: messages(purpose="agent_reply")[0].status == "delivered", timeout=60)
    assert len(messages(purpose="agent_reply")) == 1
    assert graph.texts().count("Olá Ana! A lipo parte de R$ 9.000, em até 10x.") == 1


def test_urgent_message_reaches_oncall_once(stack) -> None:
    client, inbox = stack["client"], stack["inbox"]
    patient_writes(client, "to com febre e sangrando muito depois da cirurgia")
    wait_for(lambda: len(messages(to_address=ONCALL)) == 1, timeout=90)
    patient_writes(client, "por favor alguem me responde, ta sangrando")
    wait_for(lambda: len(inbox.posted()) == 2, timeout=90)
    wait_for(lambda: all(m.triage for m in messages(direction="inbound")), timeout=30)
    (oncall,) = messages(to_address=ONCALL)
    assert oncall.channel == "sms" and "febre" in oncall.text
    wait_for(lambda: messages(to_address=ONCALL)[0].status in ("sent", "delivered"), timeout=60)
    wait_for(lambda: "urgente" in inbox.labels(), timeout=30)
    assert len(messages(to_address="medico@clinicateste.com.br")) == 1
