"""The contract every inbound webhook endpoint keeps (STYLE.md pattern 8).

`WebhookContract` is a base class: each endpoint's test module subclasses it
(see test_twilio_inbound.py, test_meta_webhook.py; our own `/api/webhook`
below) and says how to build a valid, an unsigned, a forged, a malformed and
an oversized request. The contract: a bad or missing signature → 401/403 and
nothing enqueued; oversized → 413; malformed → 400; never a 5xx; a duplicate
delivery enqueues nothing more.

Helpers here are shared by the provider tests: signing with the real
algorithms (the `twilio` SDK's RequestValidator, HMAC-SHA256 for Meta) and
reading the Celery envelopes ingest put on a Redis queue.
"""

from __future__ import annotations

import base64
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import orjson
import pytest
from twilio.request_validator import RequestValidator

from shared.providers.signatures import meta_signature
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
    """Celery envelopes on a Redis list, oldest first (kombu LPUSHes)."""
    out = []
    for raw in reversed(redis_client.lrange(queue, 0, -1)):
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
        return make_provider_client(settings)

    @pytest.fixture(autouse=True)
    def _empty_queue(self, redis_client: Any) -> None:
        redis_client.delete("inbound")

    def send(self, http: Any, req: WebhookRequest) -> Any:
        return http.open(self.path, method=req.method, data=req.body, headers=req.headers)

    # -- the contract ---------------------------------------------------------
    def test_valid_request_is_accepted_and_enqueued(self, http: Any, redis_client: Any) -> None:
        resp = self.send(http, self.valid_request(uuid.uuid4().hex))
        assert resp.status_code == self.accepted_status, resp.data
        assert len(queued_tasks(redis_client)) >= 1

    def test_missing_signature_is_rejected(self, http: Any, redis_client: Any) -> None:
        resp = self.send(http, self.unsigned_request(uuid.uuid4().hex))
        assert resp.status_code in (401, 403)
        assert resp.get_json()["field"]
        assert queued_tasks(redis_client) == []

    def test_forged_signature_is_rejected(self, http: Any, redis_client: Any) -> None:
        resp = self.send(http, self.forged_request(uuid.uuid4().hex))
        assert resp.status_code in (401, 403)
        assert queued_tasks(redis_client) == []

    def test_tampered_body_is_rejected(self, http: Any, redis_client: Any) -> None:
        resp = self.send(http, self.tampered_request(uuid.uuid4().hex))
        assert resp.status_code in (401, 403)
        assert queued_tasks(redis_client) == []

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
        assert queued_tasks(redis_client) == []

    def test_oversized_body_is_413(self, http: Any, redis_client: Any) -> None:
        req = self.oversized_request()
        assert len(req.body) > self.max_body_bytes
        resp = self.send(http, req)
        assert resp.status_code == 413
        assert queued_tasks(redis_client) == []

    def test_malformed_body_is_400(self, http: Any, redis_client: Any) -> None:
        resp = self.send(http, self.malformed_request())
        assert resp.status_code == 400
        assert resp.get_json()["field"]
        assert queued_tasks(redis_client) == []

    def test_duplicate_delivery_enqueues_nothing_more(self, http: Any, redis_client: Any) -> None:
        req = self.valid_request(uuid.uuid4().hex)
        first = self.send(http, req)
        assert first.status_code == self.accepted_status
        count = len(queued_tasks(redis_client))
        assert count >= 1
        for _ in range(3):
            again = self.send(http, req)
            assert again.status_code == self.accepted_status
        assert len(queued_tasks(redis_client)) == count


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
