"""Capability tokens for status URLs: the 202 hands the sender a URL it can
poll without an API key; the token is an HMAC of the message id, so ids
cannot be enumerated."""

from __future__ import annotations

import functools
import hashlib
import hmac


@functools.lru_cache(maxsize=8)
def _keyed_hmac(secret_key: str) -> hmac.HMAC:
    # Keying an HMAC costs more than hashing a message id; every accepted
    # webhook signs one, so each process keys it once and copies it.
    return hmac.new(secret_key.encode(), digestmod=hashlib.sha256)


def status_token(secret_key: str, message_id: str) -> str:
    mac = _keyed_hmac(secret_key).copy()
    mac.update(f"status:{message_id}".encode())
    return mac.hexdigest()[:32]


def check_status_token(secret_key: str, message_id: str, token: str) -> bool:
    # Bytes, not str: compare_digest refuses non-ASCII strings with a
    # TypeError, and a token is whatever the query string carried.
    supplied = token.encode("utf-8", "surrogatepass")
    return hmac.compare_digest(status_token(secret_key, message_id).encode(), supplied)
