"""The Telegram webhook's authentication: Telegram does not sign updates; it
sends back, in `X-Telegram-Bot-Api-Secret-Token`, the secret_token we gave
`setWebhook`. Compared in constant time, as bytes (a header is anything)."""

from __future__ import annotations

import hmac

HEADER = "X-Telegram-Bot-Api-Secret-Token"


def secret_token_ok(expected: str, given: str | None) -> bool:
    if not expected or not given:
        return False
    return hmac.compare_digest(
        expected.encode(), given.strip().encode("utf-8", "surrogatepass")
    )
