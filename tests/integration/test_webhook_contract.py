"""The contract every inbound webhook endpoint keeps (STYLE.md pattern 8).

`WebhookContract` is a base class: one subclass per endpoint describes it
(its path, how to authenticate a request, a valid, a forged, a malformed and
an oversized body, the success code and the queue it feeds). The contract: a
bad or missing signature or token → 401/403 and nothing enqueued; a body
changed after signing → rejected (endpoints that sign the body); oversized →
413; malformed → 400 naming the field; never a 5xx; a duplicate delivery
enqueues nothing more.

The six endpoints: our own `/api/webhook` (Standard Webhooks), Twilio's
status callback, Chatwoot and Rocket.Chat below; Twilio inbound in
test_twilio_inbound.py and Meta in test_meta_webhook.py, beside the helpers
that build their bodies. `test_every_inbound_endpoint_keeps_the_contract`
fails for a webhook route without a description, so a new channel's
endpoint is covered by adding one subclass.

Helpers here are shared by the provider tests: signing with the real
algorithms (the `twilio` SDK's RequestValidator, HMAC-SHA256 for Meta) and
reading the Celery envelopes ingest put on a Redis queue.
"""

from __future__ import annotations

import base64
import uuid
from dataclasses import dataclass, field
from typing import Any, ClassVar
from urllib.parse import urlencode, urlsplit

import orjson
import pytest
from twilio.request_validator import RequestValidator

from shared.providers.meta.signature import meta_signature
from tests.helpers import SIGNING_SECRET, dumps, seed_payload, sign_headers

TWILIO_AUTH_TOKEN = "twilio-test-auth-token-0123456789"
META_APP_SECRET = "meta-test-app-secret"
META_VERIFY_TOKEN = "meta-verify-token-for-tests"
PUBLIC_BASE_URL = "https://clinicq.test"


def with_provider_secrets(settings: Any) -> Any:
    """The test settings plus provider secrets (the session env has none)."""
    return settings.model_copy(
        update={
            "TWILIO_AUTH_TOKEN": TWILIO_AUTH_TOKEN,
            "META_APP_SECRET": META_APP_SECRET,
            "META_VERIFY_TOKEN": META_VERIFY_TOKEN,
            "PUBLIC_BASE_URL": PUBLIC_BASE_URL,
        }
    )


def make_provider_client(settings: Any) -> Any:
    from ingest.app import create_app

    app = create_app(with_provider_secrets(settings))
    app.testing = True
    return app.test_client()


# --- signing with the providers' real algorithms ----------------------------


def twilio_request(
    form: dict[str, str], token: str = TWILIO_AUTH_TOKEN, path: str = "/webhooks/twilio"
) -> tuple[bytes, dict[str, str]]:
    signature = RequestValidator(token).compute_signature(PUBLIC_BASE_URL + path, form)
    return urlencode(form).encode(), {
        "X-Twilio-Signature": signature,
        "Content-Type": "application/x-www-form-urlencoded",
    }


def meta_request(doc: Any, secret: str = META_APP_SECRET) -> tuple[bytes, dict[str, str]]:
    body = doc if isinstance(doc, bytes) else orjson.dumps(doc)
    return body, {
        "X-Hub-Signature-256": meta_signature(secret, body),
        "Content-Type": "application/json",
    }


# --- what ingest put on the queue -------------------------------------------


@dataclass
class QueuedTask:
    name: str
    args: list[Any]
    queue: str
    headers: dict[str, Any] = field(default_factory=dict)


def queued_tasks(redis_client: Any, queue: str = "inbound") -> list[QueuedTask]:
    """Celery envelopes waiting in a queue: its Redis lists in the order a
    worker reads them (priority, shared/core/taskqueue.py), each oldest
    first (kombu LPUSHes)."""
    from shared.core.taskqueue import queue_lists

    out = []
    waiting = [raw for key in queue_lists(queue) for raw in reversed(redis_client.lrange(key, 0, -1))]
    for raw in waiting:
        envelope = orjson.loads(raw)
        args, kwargs, _embed = orjson.loads(base64.b64decode(envelope["body"]))
        assert kwargs == {}
        out.append(
            QueuedTask(
                name=envelope["headers"]["task"],
                args=args,
                queue=envelope["properties"]["delivery_info"]["routing_key"],
                headers=envelope["headers"],
            )
        )
    return out


@dataclass
class WebhookRequest:
    body: bytes
    headers: dict[str, str]
    method: str = "POST"


class WebhookContract:
    """Subclass as `TestXxxContract(WebhookContract)` and implement the builders."""

    path: str = ""
    accepted_status: int = 200
    signature_header: str = ""
    max_body_bytes: int = 64 * 1024
    queue: str = "inbound"  # where an accepted request's task lands
    # False for endpoints authenticated by a shared token (Chatwoot, Rocket.Chat:
    # the providers sign nothing), where a body changed in transit cannot be seen.
    signs_body: bool = True
    settings_update: ClassVar[dict[str, Any]] = {}  # beyond with_provider_secrets

    # -- builders each endpoint implements ------------------------------------
    def valid_request(self, unique: str) -> WebhookRequest:
        raise NotImplementedError

    def unsigned_request(self, unique: str) -> WebhookRequest:
        req = self.valid_request(unique)
        headers = {
            k: v for k, v in req.headers.items() if k.lower() != self.signature_header.lower()
        }
        return WebhookRequest(req.body, headers)

    def forged_request(self, unique: str) -> WebhookRequest:
        """Correctly formed, signed with a secret that is not ours."""
        raise NotImplementedError

    def tampered_request(self, unique: str) -> WebhookRequest:
        """Signed correctly, then the body changed in transit."""
        req = self.valid_request(unique)
        return WebhookRequest(req.body.replace(b"e", b"E", 1), req.headers)

    def malformed_request(self) -> WebhookRequest:
        """Correctly signed, but unusable."""
        raise NotImplementedError

    def oversized_request(self) -> WebhookRequest:
        raise NotImplementedError

    # -- shared plumbing ------------------------------------------------------
    @pytest.fixture
    def http(self, settings: Any) -> Any:
        return make_provider_client(settings.model_copy(update=self.settings_update))

    @pytest.fixture(autouse=True)
    def _empty_queue(self, redis_client: Any) -> None:
        redis_client.delete(self.queue)

    def queued(self, redis_client: Any) -> list[QueuedTask]:
        return queued_tasks(redis_client, self.queue)

    def send(self, http: Any, req: WebhookRequest) -> Any:
        return http.open(self.path, method=req.method, data=req.body, headers=req.headers)

    # -- the contract ---------------------------------------------------------
    def test_valid_request_is_accepted_and_enqueued(self, http: Any, redis_client: Any) -> None:
        resp = self.send(http, self.valid_request(uuid.uuid4().hex))
        assert resp.status_code == self.accepted_status, resp.data
        assert len(self.queued(redis_client)) >= 1

    def test_missing_signature_is_rejected(self, http: Any, redis_client: Any) -> None:
        resp = self.send(http, self.unsigned_request(uuid.uuid4().hex))
        assert resp.status_code in (401, 403)
        assert resp.get_json()["field"]
        assert self.queued(redis_client) == []

    def test_forged_signature_is_rejected(self, http: Any, redis_client: Any) -> None:
        resp = self.send(http, self.forged_request(uuid.uuid4().hex))
        assert resp.status_code in (401, 403)
        assert self.queued(redis_client) == []

    def test_tampered_body_is_rejected(self, http: Any, redis_client: Any) -> None:
        if not self.signs_body:
            pytest.skip("authenticated by a token, not a signature over the body")
        resp = self.send(http, self.tampered_request(uuid.uuid4().hex))
        assert resp.status_code in (401, 403)
        assert self.queued(redis_client) == []

    @pytest.mark.parametrize(
        "garbage",
        ["", "x", "sha256=", "sha256=zz", "v1,!!!", "é" * 10, "A" * 5000, "sha1=abc", "v1, v1,"],
    )
    def test_garbage_signature_is_4xx_never_5xx(
        self, http: Any, redis_client: Any, garbage: str
    ) -> None:
        req = self.valid_request(uuid.uuid4().hex)
        headers = {
            k: (garbage if k.lower() == self.signature_header.lower() else v)
            for k, v in req.headers.items()
        }
        resp = http.open(
            self.path,
            method="POST",
            data=req.body,
            headers={k: v.encode("utf-8").decode("latin-1") for k, v in headers.items()},
        )
        assert 400 <= resp.status_code < 500
        assert self.queued(redis_client) == []

    def test_oversized_body_is_413(self, http: Any, redis_client: Any) -> None:
        req = self.oversized_request()
        assert len(req.body) > self.max_body_bytes
        resp = self.send(http, req)
        assert resp.status_code == 413
        assert self.queued(redis_client) == []

    def test_malformed_body_is_400(self, http: Any, redis_client: Any) -> None:
        resp = self.send(http, self.malformed_request())
        assert resp.status_code == 400
        assert resp.get_json()["field"]
        assert self.queued(redis_client) == []

    def test_duplicate_delivery_enqueues_nothing_more(self, http: Any, redis_client: Any) -> None:
        req = self.valid_request(uuid.uuid4().hex)
        first = self.send(http, req)
        assert first.status_code == self.accepted_status
        count = len(self.queued(redis_client))
        assert count >= 1
        for _ in range(3):
            again = self.send(http, req)
            assert again.status_code == self.accepted_status
        assert len(self.queued(redis_client)) == count


# --- our own endpoint keeps the same contract --------------------------------


class TestOwnWebhookContract(WebhookContract):
    path = "/api/webhook"
    accepted_status = 202
    signature_header = "webhook-signature"

    def valid_request(self, unique: str) -> WebhookRequest:
        body = dumps(seed_payload())
        return WebhookRequest(body, sign_headers(body, msg_id=f"msg_{unique}"))

    def unsigned_request(self, unique: str) -> WebhookRequest:
        body = dumps(seed_payload())
        return WebhookRequest(body, {"Content-Type": "application/json"})

    def forged_request(self, unique: str) -> WebhookRequest:
        body = dumps(seed_payload())
        other = "whsec_" + base64.b64encode(b"not-our-secret-at-all").decode()
        return WebhookRequest(body, sign_headers(body, secret=other, msg_id=f"msg_{unique}"))

    def malformed_request(self) -> WebhookRequest:
        body = b'{"type": "message", "channel": '
        return WebhookRequest(body, sign_headers(body, secret=SIGNING_SECRET))

    def oversized_request(self) -> WebhookRequest:
        payload = seed_payload()
        payload["message"]["text"] = "a" * (self.max_body_bytes + 10)
        body = dumps(payload)
        return WebhookRequest(body, sign_headers(body))


# --- Twilio's status callbacks -------------------------------------------------


class TestTwilioStatusWebhookContract(WebhookContract):
    # StatusCallback carries our message id in the query, part of the signed URL.
    path = "/webhooks/twilio/status?mid=0b6f1f5e-8c1e-4f7a-9a43-3f5d2c1e9b10"
    signature_header = "X-Twilio-Signature"

    @staticmethod
    def form(unique: str, **extra: str) -> dict[str, str]:
        return {"MessageSid": "SM" + unique, "MessageStatus": "delivered",
                "AccountSid": "AC" + "0" * 32, **extra}

    def valid_request(self, unique: str) -> WebhookRequest:
        return WebhookRequest(*twilio_request(self.form(unique), path=self.path))

    def forged_request(self, unique: str) -> WebhookRequest:
        return WebhookRequest(
            *twilio_request(self.form(unique), token="some-other-token", path=self.path)
        )

    def malformed_request(self) -> WebhookRequest:
        form = self.form(uuid.uuid4().hex)
        del form["MessageSid"]
        return WebhookRequest(*twilio_request(form, path=self.path))

    def oversized_request(self) -> WebhookRequest:
        form = self.form(uuid.uuid4().hex, ErrorMessage="a" * (self.max_body_bytes + 10))
        return WebhookRequest(*twilio_request(form, path=self.path))


# --- the agent inboxes: a shared token, no signature -------------------------

CHATWOOT_WEBHOOK_TOKEN = "cw-webhook-secret"
ROCKETCHAT_LIVECHAT_TOKEN = "rc-livechat-secret"


def chatwoot_message(message_id: int, content: str = "Olá, posso ajudar?") -> dict[str, Any]:
    """An agent's reply as Chatwoot's `message_created` webhook carries it
    (tests/fakes/chatwoot.py builds the same shape against its own state)."""
    return {
        "event": "message_created", "id": message_id, "content": content,
        "content_type": "text", "content_attributes": {},
        "created_at": "2026-11-23T10:00:00.000Z", "message_type": "outgoing",
        "private": False, "source_id": None,
        "sender": {"id": 1, "name": "Ana Atendente", "type": "user"},
        "account": {"id": 1, "name": "Portal Clinic"},
        "inbox": {"id": 1, "name": "clinicq"},
        "conversation": {"id": 42, "display_id": 42, "inbox_id": 1, "status": "open",
                         "contact_inbox": {"source_id": "x"}, "additional_attributes": {},
                         "channel": "Channel::Api"},
    }


def rocketchat_message(message_id: str, text: str = "Olá, posso ajudar?") -> dict[str, Any]:
    """An agent's message as Rocket.Chat Omnichannel's webhook carries it
    (tests/fakes/rocketchat.py builds the same shape against its own state)."""
    return {
        "_id": "room1", "type": "Message", "tags": [], "customFields": {},
        "visitor": {"_id": None, "token": None, "name": None, "username": "guest-1"},
        "agent": {"_id": "agent1", "username": "bia", "name": "Bia Atendente"},
        "messages": [{"u": {"_id": "agent1", "username": "bia", "name": "Bia Atendente"},
                      "username": "bia", "msg": text, "ts": "2026-11-23T10:01:00.000Z",
                      "agentId": "agent1", "_id": message_id}],
    }


class TestChatwootWebhookContract(WebhookContract):
    path = "/webhooks/chatwoot"
    # Chatwoot's URL may carry it as ?token= instead (test_inbox.py).
    signature_header = "X-Clinicq-Webhook-Token"
    signs_body = False
    queue = "inbox"
    settings_update: ClassVar[dict[str, Any]] = {"CHATWOOT_WEBHOOK_TOKEN": CHATWOOT_WEBHOOK_TOKEN}

    @staticmethod
    def request(doc: Any, token: str = CHATWOOT_WEBHOOK_TOKEN) -> WebhookRequest:
        body = doc if isinstance(doc, bytes) else orjson.dumps(doc)
        return WebhookRequest(
            body, {"X-Clinicq-Webhook-Token": token, "Content-Type": "application/json"}
        )

    def valid_request(self, unique: str) -> WebhookRequest:
        return self.request(chatwoot_message(int(unique[:12], 16)))

    def forged_request(self, unique: str) -> WebhookRequest:
        return self.request(chatwoot_message(int(unique[:12], 16)), token="not-the-token")

    def malformed_request(self) -> WebhookRequest:
        return self.request(b'{"event": "message_created", "id": ')

    def oversized_request(self) -> WebhookRequest:
        return self.request(chatwoot_message(1, "a" * (self.max_body_bytes + 10)))


class TestRocketChatWebhookContract(WebhookContract):
    path = "/webhooks/rocketchat"
    signature_header = "X-RocketChat-Livechat-Token"
    signs_body = False
    queue = "inbox"
    settings_update: ClassVar[dict[str, Any]] = {
        "ROCKETCHAT_LIVECHAT_TOKEN": ROCKETCHAT_LIVECHAT_TOKEN,
        "ROCKETCHAT_USER_ID": "botUserId123",
    }

    @staticmethod
    def request(doc: Any, token: str = ROCKETCHAT_LIVECHAT_TOKEN) -> WebhookRequest:
        body = doc if isinstance(doc, bytes) else orjson.dumps(doc)
        return WebhookRequest(
            body, {"X-RocketChat-Livechat-Token": token, "Content-Type": "application/json"}
        )

    def valid_request(self, unique: str) -> WebhookRequest:
        return self.request(rocketchat_message(unique))

    def forged_request(self, unique: str) -> WebhookRequest:
        return self.request(rocketchat_message(unique), token="not-the-token")

    def malformed_request(self) -> WebhookRequest:
        return self.request(b'{"_id": "room1", "messages": ')

    def oversized_request(self) -> WebhookRequest:
        return self.request(rocketchat_message("m1", "a" * (self.max_body_bytes + 10)))


def chatwoot_widget_message(message_id: int, content: str = "Oi, queria marcar consulta"
                            ) -> dict[str, Any]:
    """A site visitor's message in a Chatwoot *website* inbox, as Chatwoot's
    `message_created` carries it (tests/fakes/chatwoot.py builds the same shape)."""
    sender = {"id": 77, "name": "Visitante", "email": "visitante@example.com",
              "phone_number": None, "identifier": None, "type": "contact"}
    return {
        "event": "message_created", "id": message_id, "content": content,
        "content_type": "text", "content_attributes": {},
        "created_at": "2026-11-23T10:00:00.000Z", "message_type": "incoming",
        "private": False, "source_id": None, "sender": sender,
        "account": {"id": 1, "name": "Portal Clinic"},
        "inbox": {"id": 4, "name": "Site"},
        "conversation": {"id": 43, "display_id": 43, "inbox_id": 4, "status": "open",
                         "can_reply": True, "channel": "Channel::WebWidget",
                         "contact_inbox": {"contact_id": 77, "inbox_id": 4,
                                           "source_id": "5d1c0b9e-widget", "hmac_verified": False},
                         "additional_attributes": {"referer": "https://clinica.com.br/"},
                         "meta": {"sender": sender}},
    }


def rocketchat_visitor_message(message_id: str, text: str = "Oi, queria marcar consulta"
                               ) -> dict[str, Any]:
    """A Livechat widget visitor's message as Rocket.Chat Omnichannel's
    webhook ("visitor message") carries it."""
    visitor = {"_id": "63db8d4990fe6eda42ad429a", "token": "e36e352c742eee48",
               "name": "James", "username": "guest-3",
               "email": [{"address": "james@example.com"}], "phone": None}
    return {
        "_id": "widgetRoom1", "type": "Message", "label": "James", "tags": [],
        "createdAt": "2026-11-23T10:00:00.000Z", "lastMessageAt": "2026-11-23T10:00:00.000Z",
        "visitor": visitor,
        "messages": [{"u": {"_id": visitor["_id"], "username": "guest-3", "name": "James"},
                      "_id": message_id, "username": "guest-3", "msg": text,
                      "ts": "2026-11-23T10:00:00.000Z"}],
    }


class TestChatwootWidgetContract(TestChatwootWebhookContract):
    """The same endpoint carrying a website-widget visitor's message: it goes
    to the `inbound` queue as channel webchat (shared/inbox/webchat.py)."""

    queue = "inbound"

    def valid_request(self, unique: str) -> WebhookRequest:
        return self.request(chatwoot_widget_message(int(unique[:12], 16)))

    def forged_request(self, unique: str) -> WebhookRequest:
        return self.request(chatwoot_widget_message(int(unique[:12], 16)), token="not-the-token")

    def oversized_request(self) -> WebhookRequest:
        return self.request(chatwoot_widget_message(1, "a" * (self.max_body_bytes + 10)))

    def test_widget_message_is_webchat_on_inbound(self, http: Any, redis_client: Any) -> None:
        assert self.send(http, self.valid_request(uuid.uuid4().hex)).status_code == 200
        (task,) = self.queued(redis_client)
        payload = task.args[1]
        assert payload["channel"] == "webchat" and payload["attested"] == []
        assert payload["contact"] == {"webchat": "chatwoot:77", "name": "Visitante",
                                      "email": "visitante@example.com"}
        assert payload["message"]["metadata"] == {"inbox": "chatwoot",
                                                  "inbox_conversation_id": "43"}

    def test_wrong_typed_conversation_is_400_naming_it(self, http: Any, redis_client: Any
                                                        ) -> None:
        doc = chatwoot_widget_message(5)
        doc["conversation"] = "Channel::WebWidget"
        resp = self.send(http, self.request(doc))
        assert resp.status_code == 400 and resp.get_json()["field"] == "conversation"
        assert self.queued(redis_client) == []


class TestRocketChatWidgetContract(TestRocketChatWebhookContract):
    """The same endpoint carrying a Livechat widget visitor's message."""

    queue = "inbound"

    def valid_request(self, unique: str) -> WebhookRequest:
        return self.request(rocketchat_visitor_message(unique))

    def forged_request(self, unique: str) -> WebhookRequest:
        return self.request(rocketchat_visitor_message(unique), token="not-the-token")

    def oversized_request(self) -> WebhookRequest:
        return self.request(rocketchat_visitor_message("m1", "a" * (self.max_body_bytes + 10)))

    def test_visitor_message_is_webchat_on_inbound(self, http: Any, redis_client: Any) -> None:
        assert self.send(http, self.valid_request("visitorMsgA")).status_code == 200
        (task,) = self.queued(redis_client)
        payload = task.args[1]
        assert payload["channel"] == "webchat"
        # The visitor's _id names them, never the Livechat token (a credential).
        assert payload["contact"] == {"webchat": "rocketchat:63db8d4990fe6eda42ad429a",
                                      "name": "James", "email": "james@example.com"}
        assert "e36e352c742eee48" not in orjson.dumps(payload).decode()


# --- every inbound endpoint has a description ---------------------------------


def _descriptions() -> list[type[WebhookContract]]:
    # The provider modules hold their own subclasses; importing them here
    # registers those (imported inside the test so pytest does not collect
    # them twice from this module).
    import tests.integration.test_meta_webhook
    import tests.integration.test_telegram_webhook
    import tests.integration.test_twilio_inbound  # noqa: F401

    found, todo = [], list(WebhookContract.__subclasses__())
    while todo:
        cls = todo.pop()
        found.append(cls)
        todo.extend(cls.__subclasses__())
    return found


def test_every_inbound_endpoint_keeps_the_contract(app: Any) -> None:
    routes = {
        rule.rule
        for rule in app.url_map.iter_rules()
        if "POST" in (rule.methods or ())
        and (rule.rule.startswith("/webhooks/") or rule.rule == "/api/webhook")
    }
    described = {urlsplit(cls.path).path for cls in _descriptions()}
    assert len(routes) >= 6, routes  # the filter finds the six that exist today
    assert routes - described == set(), "a webhook endpoint without a WebhookContract subclass"
