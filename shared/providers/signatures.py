"""Provider webhook signatures, verified on what the provider signed.

- Twilio: `X-Twilio-Signature` = base64(HMAC-SHA1(auth token, public URL +
  sorted form params)). We use the SDK's own `RequestValidator` (constant-time
  compare inside). The URL is the one Twilio called — PUBLIC_BASE_URL + path +
  query — never what a proxy rewrote.
- Meta: `X-Hub-Signature-256: sha256=<hex HMAC-SHA256(app secret, raw body)>`,
  over the raw bytes (re-serialized JSON breaks on non-ASCII).
"""

from __future__ import annotations

import hashlib
import hmac
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


def meta_signature(app_secret: str, raw_body: bytes) -> str:
    return "sha256=" + hmac.new(app_secret.encode(), raw_body, hashlib.sha256).hexdigest()


def verify_meta_signature(app_secret: str, raw_body: bytes, header: str | None) -> bool:
    if not app_secret or not header or not header.startswith("sha256="):
        return False
    # Bytes: compare_digest raises on non-ASCII str, and a header is anything.
    supplied = header.strip().encode("utf-8", "surrogatepass")
    return hmac.compare_digest(meta_signature(app_secret, raw_body).encode(), supplied)
