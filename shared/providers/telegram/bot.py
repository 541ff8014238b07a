"""Telegram Bot API (`sendMessage`) over `requests`.

The address is the patient's private chat id with the bot (IdentityKind
`telegram`). A template that declares buttons (`telegram/<name>.buttons`)
is sent with an inline keyboard whose `callback_data` is the button's payload
(`CONFIRM_<appointment id>`); a tap comes back as a callback query
(shared/providers/telegram/inbound.py).

Telegram has no delivery receipts: a successful `sendMessage` means the
message is in the chat, so it is recorded `sent` and stays there (no
`delivered`/`read` ever arrives).

Errors (the Bot API answers `{"ok": false, "error_code", "description",
"parameters": {"retry_after"}}`): 429 is retried no sooner than
`retry_after`; 403 "Forbidden: bot was blocked by the user" fails for good and
records an opt-out of the telegram channel (the patient blocked us: a later
reminder must not be tried); "user is deactivated" and the other 4xx fail for
good; 5xx and transport errors follow the base classification (a timeout
after the request left → `unknown`: the Bot API cannot be asked whether it
sent a message, so the reconciler flags it for an operator).
"""

from __future__ import annotations

from typing import Any, ClassVar

import requests

from shared.core.config import Settings
from shared.providers.base import (
    OutgoingMessage,
    PermanentError,
    ProcessEnvSession,
    Provider,
    ProviderError,
    ProviderResult,
    RetryableError,
    classify_http_status,
    parse_retry_after,
)
from shared.providers.telegram import VENDOR

TEXT_MAX = 4096  # sendMessage: 1-4096 characters after entity parsing
CALLBACK_DATA_MAX_BYTES = 64

# Our codes for the Bot API's 403 descriptions (its error_code is only the
# HTTP status, so the description tells a block from a deleted account).
BLOCKED = "bot_blocked"
DEACTIVATED = "user_deactivated"


def error_code(status: int, description: str) -> str:
    """Our error code for a Bot API error: the 403 reasons by description,
    otherwise the Bot API's error_code (its HTTP status)."""
    text = description.lower()
    if status == 403 and "blocked by the user" in text:
        return BLOCKED
    if status == 403 and "deactivated" in text:
        return DEACTIVATED
    return str(status)


def inline_keyboard(buttons: list[tuple[str, str]]) -> dict[str, Any] | None:
    """`reply_markup` for (label, payload) buttons, one row; None without any.
    A payload over the Bot API's 64 bytes would be refused with a 400: it is
    a template mistake, so it fails the message rather than drop the button."""
    if not buttons:
        return None
    row = []
    for label, payload in buttons:
        if not 1 <= len(payload.encode()) <= CALLBACK_DATA_MAX_BYTES:
            raise PermanentError(
                f"button payload longer than {CALLBACK_DATA_MAX_BYTES} bytes", "template_error"
            )
        row.append({"text": label, "callback_data": payload})
    return {"inline_keyboard": [row]}


class TelegramBotProvider(Provider):
    name: ClassVar[str] = "telegram_bot"
    channel: ClassVar[str] = "telegram"
    vendor: ClassVar[str] = VENDOR
    # No status webhooks: status_map stays empty.
    retryable_codes: ClassVar[frozenset[str]] = frozenset({"429"})
    permanent_codes: ClassVar[frozenset[str]] = frozenset(
        {DEACTIVATED, "400", "401", "403", "404"}
    )
    opted_out_codes: ClassVar[frozenset[str]] = frozenset({BLOCKED})
    can_lookup: ClassVar[bool] = False

    def __init__(self, settings: Settings):
        super().__init__(settings)
        self.session = ProcessEnvSession()

    @classmethod
    def configured(cls, settings: Settings) -> bool:
        return bool(settings.TELEGRAM_BOT_TOKEN)

    def sender(self) -> str:
        # The bot's id (the token's part before ':'), never the secret part.
        return self.settings.TELEGRAM_BOT_TOKEN.partition(":")[0]

    def method_url(self, method: str) -> str:
        base = self.settings.TELEGRAM_API_BASE_URL.rstrip("/")
        return f"{base}/bot{self.settings.TELEGRAM_BOT_TOKEN}/{method}"

    def payload(self, message: OutgoingMessage) -> dict[str, Any]:
        if not message.text:
            raise PermanentError("a Telegram message needs text", "empty")
        body: dict[str, Any] = {
            "chat_id": int(message.to) if message.to.isdigit() else message.to,
            "text": message.text[:TEXT_MAX],
            "link_preview_options": {"is_disabled": True},
        }
        markup = inline_keyboard(message.keyboard)
        if markup is not None:
            body["reply_markup"] = markup
        return body

    def call(self, method: str, body: dict[str, Any]) -> dict[str, Any]:
        """One Bot API call; its `result`, or the classified error."""
        response = self.http(self.session, "POST", self.method_url(method), json=body)
        if response.status_code >= 400:
            raise self._classify(response)
        try:
            doc = response.json()
            if doc.get("ok") is not True:
                raise ValueError
        except (ValueError, AttributeError):
            # Accepted (2xx) but unreadable: it may well have gone; do not resend.
            raise PermanentError("unreadable answer to an accepted call", "bad_response") from None
        return doc

    def send(self, message: OutgoingMessage) -> ProviderResult:
        doc = self.call("sendMessage", self.payload(message))
        result: Any = doc.get("result")
        try:
            chat = result["chat"]["id"]
            sent_id = result["message_id"]
        except (KeyError, TypeError):
            raise PermanentError("unreadable answer to an accepted send", "bad_response") from None
        # Message ids are per chat: the pair names the message.
        return ProviderResult(provider_message_id=f"{chat}:{sent_id}", status="sent", raw=doc)

    def _classify(self, response: requests.Response) -> ProviderError:
        description, retry_after = response.text[:300], None
        try:
            doc = response.json()
            description = str(doc.get("description") or description)[:300]
            parameters = doc.get("parameters") or {}
            if isinstance(parameters, dict) and parameters.get("retry_after") is not None:
                retry_after = max(0.0, float(parameters["retry_after"]))
        except (ValueError, AttributeError, TypeError):
            pass
        if retry_after is None:
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
        code = error_code(response.status_code, description)
        error = classify_http_status(
            response.status_code,
            code,
            retry_after,
            f"telegram {response.status_code}: {description}",
            self.retryable_codes,
            self.permanent_codes,
            self.opted_out_codes,
        )
        if isinstance(error, RetryableError) and error.retry_after is None:
            error.retry_after = retry_after
        return error
