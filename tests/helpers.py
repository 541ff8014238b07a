"""Helpers any test may import, unit or integration: the suite's secrets,
signing a webhook the Standard Webhooks way, the seed's example payload and
polling for a condition. Nothing here starts a server or opens a connection."""

from __future__ import annotations

import base64
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson
from standardwebhooks import Webhook

# The Standard Webhooks spec's own test key, plus a second one for rotation.
SIGNING_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
OLD_SIGNING_SECRET = "whsec_" + base64.b64encode(b"an-older-secret-being-rotated-out").decode()
LEGACY_SECRET = "legacy-body-secret-for-tests"
SECRET_KEY = "test-secret-key-not-for-production"


def sign_headers(
    body: bytes,
    secret: str = SIGNING_SECRET,
    msg_id: str | None = None,
    timestamp: datetime | None = None,
) -> dict[str, str]:
    msg_id = msg_id or f"msg_{uuid.uuid4().hex}"
    timestamp = timestamp or datetime.now(UTC)
    signature = Webhook(secret).sign(msg_id, timestamp, body.decode())
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(timestamp.timestamp())),
        "webhook-signature": signature,
        "Content-Type": "application/json",
    }


def seed_payload(**overrides: Any) -> dict[str, Any]:
    """The first seed's example payload, exactly (webhook_secret removed)."""
    payload: dict[str, Any] = {
        "type": "message",
        "channel": "whatsapp",
        "contact": {
            "name": "João Silva",
            "phone": "+5511999999999",
            "email": "joao@email.com",
            "cpf": "123.456.789-00",
        },
        "message": {
            "text": "Gostaria de agendar uma consulta",
            "timestamp": "2025-11-20T03:00:00Z",
            "metadata": {"source": "website_form", "page": "/agendamento", "utm_source": "google"},
        },
    }
    payload.update(overrides)
    return payload


def dumps(doc: Any) -> bytes:
    return orjson.dumps(doc)


def wait_for(predicate: Callable[[], Any], timeout: float = 20.0, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)
