"""Twilio's webhook signature, verified on what Twilio signed.

`X-Twilio-Signature` = base64(HMAC-SHA1(auth token, public URL + sorted form
params)). The SDK's own `RequestValidator` checks it (constant-time compare
inside). The URL is the one Twilio called — PUBLIC_BASE_URL + path + query —
never what a proxy rewrote.
"""

from __future__ import annotations

from collections.abc import Mapping

from twilio.request_validator import RequestValidator


def public_url(public_base_url: str, path: str, query_string: bytes | str = b"") -> str:
    # A query string is not always UTF-8; one that is not cannot be the URL
    # a provider signed, so it only has to fail verification, not raise.
    qs = query_string.decode(errors="replace") if isinstance(query_string, bytes) else query_string
    url = public_base_url.rstrip("/") + path
    return f"{url}?{qs}" if qs else url


def verify_twilio_signature(
    auth_token: str, url: str, params: Mapping[str, str], signature: str | None
) -> bool:
    if not auth_token or not signature:
        return False
    try:
        return bool(RequestValidator(auth_token).validate(url, dict(params), signature))
    except Exception:  # noqa: BLE001 - malformed input is a failed check, not a 500
        return False
