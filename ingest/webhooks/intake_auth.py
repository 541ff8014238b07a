"""Authentication of `POST /api/webhook`, before anything is parsed (rule 8).

Two ways in:
- Standard Webhooks headers (`webhook-id`, `webhook-timestamp`,
  `webhook-signature`), checked on the raw bytes against every configured
  `whsec_` secret (rotation), ±5 minutes, by the `standardwebhooks` package.
  Its malformed-header paths raise ValueError / binascii.Error /
  UnicodeDecodeError rather than its own error class, so every exception is a
  401, never a 500.
- The seed's legacy body field `webhook_secret`, only when `WEBHOOK_SECRET` is
  configured, compared in constant time. The caller strips it before the
  payload goes anywhere.
"""

from __future__ import annotations

import hmac
import logging
from dataclasses import dataclass

from standardwebhooks import Webhook

from shared.core.config import Settings
from shared.core.errors import ClinicqError

log = logging.getLogger(__name__)

SIGNATURE_HEADERS = ("webhook-id", "webhook-timestamp", "webhook-signature")


class WebhookAuthError(ClinicqError):
    pass


@dataclass(frozen=True)
class AuthResult:
    method: str  # "standard-webhooks" | "legacy-secret" | "insecure-dev"
    webhook_id: str | None = None


class WebhookAuthenticator:
    def __init__(self, settings: Settings) -> None:
        self._verifiers = [Webhook(secret) for secret in settings.WEBHOOK_SIGNING_SECRETS]
        self._legacy = settings.WEBHOOK_SECRET.encode() if settings.WEBHOOK_SECRET else None
        self.insecure = (
            settings.CLINICQ_INSECURE_DEV and not self._verifiers and self._legacy is None
        )

    @property
    def legacy_enabled(self) -> bool:
        return self._legacy is not None

    @staticmethod
    def has_signature_headers(headers: dict[str, str]) -> bool:
        return any(name in headers for name in SIGNATURE_HEADERS)

    def verify_signature(self, body: bytes, headers: dict[str, str]) -> AuthResult:
        if not self._verifiers:
            raise WebhookAuthError("signature headers given but no signing secret is configured")
        if not all(headers.get(name) for name in SIGNATURE_HEADERS):
            raise WebhookAuthError("missing webhook-id, webhook-timestamp or webhook-signature")
        wanted = {name: headers[name] for name in SIGNATURE_HEADERS}
        for verifier in self._verifiers:
            try:
                verifier.verify(body, wanted, json_parse=False)
            except Exception:  # noqa: BLE001, S112 - see module docstring; try the next secret
                continue
            return AuthResult("standard-webhooks", wanted["webhook-id"])
        raise WebhookAuthError("invalid, stale or malformed webhook signature")

    def verify_legacy_secret(self, supplied: object) -> AuthResult:
        if self._legacy is None:
            raise WebhookAuthError("missing webhook signature headers")
        if not isinstance(supplied, str) or not hmac.compare_digest(
            supplied.encode("utf-8", "surrogatepass"), self._legacy
        ):
            raise WebhookAuthError("invalid webhook secret")
        return AuthResult("legacy-secret")
