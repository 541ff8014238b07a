"""Capability tokens: status URLs (the 202 hands the sender a URL it can
poll without an API key; the token is an HMAC of the message id, so ids
cannot be enumerated) and the patient's self-service link (below)."""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import uuid


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


# --- the patient's self-service link: /a/<token> -------------------------------------
#
# The token names one appointment and proves the link was made by us: the
# appointment id (16 bytes) followed by an HMAC of the id and the
# appointment's `link_nonce`, both base64url without padding — 38 URL-safe
# characters, short enough for an SMS. Revoking draws a new nonce, so every
# earlier link fails the check; expiry (the visit's start) is read from the
# appointment, so a reschedule moves it with no new link.

_LINK_MAC_BYTES = 12  # 96 bits: forging one needs ~2**96 tries against a live server
_ID_CHARS = 22  # base64url of 16 bytes, no padding
_MAC_CHARS = 16  # base64url of 12 bytes
APPOINTMENT_LINK_TOKEN_CHARS = _ID_CHARS + _MAC_CHARS


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _link_mac(secret_key: str, appointment_id: uuid.UUID, nonce: str) -> bytes:
    mac = _keyed_hmac(secret_key).copy()
    mac.update(f"appointment-link:{appointment_id}:{nonce}".encode())
    return mac.digest()[:_LINK_MAC_BYTES]


def appointment_link_token(secret_key: str, appointment_id: uuid.UUID, nonce: str) -> str:
    return _b64(appointment_id.bytes) + _b64(_link_mac(secret_key, appointment_id, nonce))


def appointment_link_url(public_base_url: str, token: str) -> str:
    return f"{public_base_url.rstrip('/')}/a/{token}"


def appointment_in_link_token(token: str) -> uuid.UUID | None:
    """The appointment a token claims to name (unverified), or None when it
    cannot be a token at all. Check it with `check_appointment_link_token`."""
    if len(token) != APPOINTMENT_LINK_TOKEN_CHARS or not token.isascii():
        return None
    try:
        raw = base64.urlsafe_b64decode(token[:_ID_CHARS] + "==")
    except (ValueError, binascii.Error):
        return None
    if len(raw) != 16 or _b64(raw) != token[:_ID_CHARS]:  # one spelling per id
        return None
    return uuid.UUID(bytes=raw)


def check_appointment_link_token(
    secret_key: str, token: str, appointment_id: uuid.UUID, nonce: str
) -> bool:
    expected = appointment_link_token(secret_key, appointment_id, nonce)
    return hmac.compare_digest(expected.encode(), token.encode("utf-8", "surrogatepass"))


def page_form_token(secret_key: str, link_token: str, cookie: str, purpose: str) -> str:
    """CSRF token of a self-service form: bound to the link, to the browser's
    double-submit cookie and to what the form does, so a token lifted from
    one form or one browser is worthless for another."""
    mac = _keyed_hmac(secret_key).copy()
    mac.update(f"page-form:{link_token}:{cookie}:{purpose}".encode())
    return mac.hexdigest()[:32]


def check_page_form_token(
    secret_key: str, link_token: str, cookie: str, purpose: str, supplied: str
) -> bool:
    expected = page_form_token(secret_key, link_token, cookie, purpose)
    return hmac.compare_digest(expected.encode(), supplied.encode("utf-8", "surrogatepass"))
