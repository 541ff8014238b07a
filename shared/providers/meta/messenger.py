"""Messenger through Meta's Send API (`POST /{page-id}/messages`) over `requests`.

What is sent (Send API reference): `recipient.id` = the person's page-scoped
id (PSID), `messaging_type` = `RESPONSE` inside the standard 24-hour window
or `MESSAGE_TAG` with `tag: HUMAN_AGENT` for an agent's reply within 7 days
(the delivery engine decides which, shared/outbound/messaging_window.py, and
fails anything else before it gets here), `message.text` with up to 13
`quick_replies` (title ≤ 20 characters, payload ≤ 1000) from the template's
buttons, and `message.metadata` = our message id (Meta echoes it back in
message echoes). The Page access token goes in the Authorization header, not
the URL, so it never lands in an access log.

Errors come as `{"error": {"message", "type", "code", "error_subcode",
"fbtrace_id"}}` and are classified by `code` (PROVIDERS.md, Meta's Send API
error list): 613 (calls to this API exceeded the rate limit), 4 (application
request limit), 2 and 1 (temporary / unknown), 1200 (temporary send failure)
are retried; 10 (with subcode 2018278: outside the allowed window), 551
(this person isn't available), 100 (bad parameter, no matching user), 190
(access token), 200 (permission) are permanent.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, ClassVar

import requests

from shared.core.config import Settings
from shared.core.enums import MessageStatus
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
from shared.providers.meta import VENDOR

QUICK_REPLIES_MAX = 13
QUICK_REPLY_TITLE_MAX = 20
QUICK_REPLY_PAYLOAD_MAX = 1000
# Meta's own rate limits say nothing about when to come back: wait a while.
RATE_LIMITED_RETRY_AFTER = 30.0


class MetaMessengerProvider(Provider):
    name: ClassVar[str] = "meta_messenger"
    channel: ClassVar[str] = "messenger"
    vendor: ClassVar[str] = VENDOR

    # Meta's status words, read alike for all its providers (the DM parser,
    # shared/providers/meta/messaging.py, reports `delivered` and `read`).
    status_map: ClassVar[Mapping[str, MessageStatus]] = MappingProxyType(
        {
            "sent": MessageStatus.SENT,
            "delivered": MessageStatus.DELIVERED,
            "read": MessageStatus.READ,
            "failed": MessageStatus.FAILED,
        }
    )
    retryable_codes: ClassVar[frozenset[str]] = frozenset({"1", "2", "4", "613", "1200"})
    permanent_codes: ClassVar[frozenset[str]] = frozenset(
        {"10", "100", "190", "200", "230", "551", "2018278", "2018108", "2018001"}
    )
    # Text limit of the Send API for this channel.
    text_max_chars: ClassVar[int] = 2000
    text_max_bytes: ClassVar[int | None] = None
    # Whether `message.metadata` (our id, echoed back) is part of this API.
    sends_metadata: ClassVar[bool] = True

    def __init__(self, settings: Settings):
        super().__init__(settings)
        self.session = ProcessEnvSession()
        self.session.headers["Authorization"] = f"Bearer {self.token()}"

    def token(self) -> str:
        return self.settings.MESSENGER_PAGE_TOKEN

    @classmethod
    def configured(cls, settings: Settings) -> bool:
        return bool(settings.MESSENGER_PAGE_ID and settings.MESSENGER_PAGE_TOKEN)

    def sender(self) -> str:
        return self.settings.MESSENGER_PAGE_ID

    def _text(self, text: str) -> str:
        text = text[: self.text_max_chars]
        if self.text_max_bytes is not None:
            data = text.encode("utf-8")[: self.text_max_bytes]
            text = data.decode("utf-8", "ignore")  # never half a character
        return text

    def payload(self, message: OutgoingMessage) -> dict[str, Any]:
        if not message.text:
            raise PermanentError(f"{self.channel}: nothing to send (no text)", "empty")
        body: dict[str, Any] = {"recipient": {"id": message.to}}
        if message.message_tag:
            body["messaging_type"] = "MESSAGE_TAG"
            body["tag"] = message.message_tag
        else:
            body["messaging_type"] = "RESPONSE"
        content: dict[str, Any] = {"text": self._text(message.text)}
        if message.quick_replies:
            content["quick_replies"] = [
                {
                    "content_type": "text",
                    "title": title[:QUICK_REPLY_TITLE_MAX],
                    "payload": payload[:QUICK_REPLY_PAYLOAD_MAX],
                }
                for title, payload in message.quick_replies[:QUICK_REPLIES_MAX]
            ]
        if self.sends_metadata:
            content["metadata"] = message.message_id
        body["message"] = content
        return body

    def send(self, message: OutgoingMessage) -> ProviderResult:
        url = f"{self.settings.META_GRAPH_BASE_URL.rstrip('/')}/{self.sender()}/messages"
        response = self.http(self.session, "POST", url, json=self.payload(message))
        if response.status_code >= 400:
            raise self._classify(response)
        try:
            mid = response.json()["message_id"]
        except (ValueError, KeyError, TypeError):
            # Accepted (2xx) but unreadable: it may well go out; do not resend.
            raise PermanentError("unreadable answer to an accepted send", "bad_response") from None
        return ProviderResult(provider_message_id=str(mid), raw=response.json())

    def _classify(self, response: requests.Response) -> ProviderError:
        code, subcode, text = None, None, response.text[:300]
        try:
            err = response.json().get("error") or {}
            code = str(err.get("code")) if err.get("code") is not None else None
            if err.get("error_subcode") is not None:
                subcode = str(err.get("error_subcode"))
            text = str(err.get("message") or text)[:300]
        except (ValueError, AttributeError):
            pass
        detail = f"meta {response.status_code}: {text}"
        if subcode:
            detail += f" (subcode {subcode})"
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        # The subcode is the precise reason where Meta gives one (2018278:
        # outside the window, whatever the code).
        precise = subcode if subcode in self.permanent_codes else code
        error = classify_http_status(
            response.status_code,
            precise,
            retry_after,
            detail,
            self.retryable_codes,
            self.permanent_codes,
            self.opted_out_codes,
        )
        if subcode and error.code == subcode and code:
            error.code = f"{code}/{subcode}"[:32]
        if isinstance(error, RetryableError) and error.retry_after is None and code in {"4", "613"}:
            error.retry_after = RATE_LIMITED_RETRY_AFTER
        return error
