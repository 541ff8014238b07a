"""Meta's webhook signature, verified on what Meta signed.

`X-Hub-Signature-256: sha256=<hex HMAC-SHA256(app secret, raw body)>`, over
the raw bytes (re-serialized JSON breaks on non-ASCII).
"""

from __future__ import annotations

import hashlib
import hmac


def meta_signature(app_secret: str, raw_body: bytes) -> str:
    return "sha256=" + hmac.new(app_secret.encode(), raw_body, hashlib.sha256).hexdigest()


def verify_meta_signature(app_secret: str, raw_body: bytes, header: str | None) -> bool:
    if not app_secret or not header or not header.startswith("sha256="):
        return False
    # Bytes: compare_digest raises on non-ASCII str, and a header is anything.
    supplied = header.strip().encode("utf-8", "surrogatepass")
    return hmac.compare_digest(meta_signature(app_secret, raw_body).encode(), supplied)
