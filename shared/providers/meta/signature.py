"""Meta's webhook authentication: the subscription handshake and the
signature of every event, verified on what Meta signed.

- Handshake: `GET ?hub.mode=subscribe&hub.verify_token=…&hub.challenge=…`
  is answered with the challenge when the token is ours.
- Events: `X-Hub-Signature-256: sha256=<hex HMAC-SHA256(app secret, raw
  body)>`, over the raw bytes (re-serialized JSON breaks on non-ASCII).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping

from shared.core.errors import FieldError

CHALLENGE_MAX = 256


def subscription_challenge(query: Mapping[str, str], verify_token: str) -> str:
    """The challenge to answer Meta's subscription handshake with.

    Raises FieldError: 403 unless it is a subscription with our (configured)
    verify token, 400 for a challenge that is empty or too long.
    """
    mode = query.get("hub.mode", "")
    token = query.get("hub.verify_token", "")
    challenge = query.get("hub.challenge", "")
    token_ok = bool(verify_token) and hmac.compare_digest(token.encode(), verify_token.encode())
    if mode != "subscribe" or not token_ok:
        raise FieldError("verification failed", "hub.verify_token", status=403)
    if not challenge or len(challenge) > CHALLENGE_MAX:
        raise FieldError(f"must be 1-{CHALLENGE_MAX} characters", "hub.challenge")
    return challenge


def meta_signature(app_secret: str, raw_body: bytes) -> str:
    return "sha256=" + hmac.new(app_secret.encode(), raw_body, hashlib.sha256).hexdigest()


def verify_meta_signature(app_secret: str, raw_body: bytes, header: str | None) -> bool:
    if not app_secret or not header or not header.startswith("sha256="):
        return False
    # Bytes: compare_digest raises on non-ASCII str, and a header is anything.
    supplied = header.strip().encode("utf-8", "surrogatepass")
    return hmac.compare_digest(meta_signature(app_secret, raw_body).encode(), supplied)
