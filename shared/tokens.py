"""Capability tokens for status URLs: the 202 hands the sender a URL it can
poll without an API key; the token is an HMAC of the message id, so ids
cannot be enumerated."""

from __future__ import annotations

import hashlib
import hmac


def status_token(secret_key: str, message_id: str) -> str:
    return hmac.new(
        secret_key.encode(), f"status:{message_id}".encode(), hashlib.sha256
    ).hexdigest()[:32]


def check_status_token(secret_key: str, message_id: str, token: str) -> bool:
    return hmac.compare_digest(status_token(secret_key, message_id), token)
