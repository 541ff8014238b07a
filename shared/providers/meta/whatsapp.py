"""WhatsApp Cloud API (Meta; 360dialog speaks the same payloads with its own
base URL and key) over `requests`.

`biz_opaque_callback_data` carries our message id: Meta echoes it in status
webhooks, so a status finds its row even if we never recorded the wamid.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, ClassVar

import requests

from shared.core.config import Settings
from shared.core.enums import MessageStatus
from shared.core.identity import whatsapp_wa_id
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

INTERACTIVE_BODY_MAX = 1024
INTERACTIVE_BUTTONS_MAX = 3  # reply buttons of one interactive message


def _reply_buttons(message: OutgoingMessage) -> list[dict[str, Any]]:
    pairs = list(zip(message.button_labels, message.template_buttons, strict=False))
    if not pairs or len(pairs) > INTERACTIVE_BUTTONS_MAX:
        return []
    return [
        {"type": "reply", "reply": {"id": payload[:256], "title": label[:20]}}
        for label, payload in pairs
    ]


class MetaWhatsAppProvider(Provider):
    name: ClassVar[str] = "meta_whatsapp"
    channel: ClassVar[str] = "whatsapp"
    vendor: ClassVar[str] = VENDOR

    # PROVIDERS.md: the statuses of a status webhook's `statuses[]`.
    status_map: ClassVar[Mapping[str, MessageStatus]] = MappingProxyType(
        {
            "sent": MessageStatus.SENT,
            "delivered": MessageStatus.DELIVERED,
            "read": MessageStatus.READ,
            "failed": MessageStatus.FAILED,
        }
    )
    # PROVIDERS.md: Meta error codes. It lists none for an opted-out recipient.
    retryable_codes: ClassVar[frozenset[str]] = frozenset(
        {"130429", "131056", "131000", "1", "2", "4", "80007", "133004"}
    )
    permanent_codes: ClassVar[frozenset[str]] = frozenset(
        {"131047", "131026", "131049", "131051", "131052", "131053", "100", "190", "10", "200"}
        | {str(code) for code in range(132000, 132017)}
    )
    # Not a WhatsApp user / cannot receive (131026), re-engagement required
    # (131047), held back (131049), template missing, paused or disabled
    # (132000-132016): the patient may still be reached on another channel.
    failover_codes: ClassVar[frozenset[str]] = frozenset(
        {"131026", "131047", "131049"} | {str(code) for code in range(132000, 132017)}
    )

    def __init__(self, settings: Settings):
        super().__init__(settings)
        self.session = ProcessEnvSession()
        self.session.headers["Authorization"] = f"Bearer {settings.WHATSAPP_TOKEN}"

    @classmethod
    def configured(cls, settings: Settings) -> bool:
        return bool(settings.WHATSAPP_TOKEN and settings.WHATSAPP_PHONE_NUMBER_ID)

    def sender(self) -> str:
        return self.settings.WHATSAPP_PHONE_NUMBER_ID

    def payload(self, message: OutgoingMessage) -> dict[str, Any]:
        base: dict[str, Any] = {
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": whatsapp_wa_id(message.to),
            "biz_opaque_callback_data": message.message_id,
        }
        if message.in_service_window and message.text and _reply_buttons(message):
            # Inside the window the same quick replies ride on an interactive
            # message (their taps come back as `button_reply` with our id).
            base["type"] = "interactive"
            base["interactive"] = {
                "type": "button",
                "body": {"text": message.text[:INTERACTIVE_BODY_MAX]},
                "action": {"buttons": _reply_buttons(message)},
            }
            return base
        if message.in_service_window and message.text:
            base["type"] = "text"
            base["text"] = {"body": message.text[:4096], "preview_url": False}
            return base
        if not message.template:
            raise PermanentError(
                "outside the 24-hour window WhatsApp needs an approved template", "131047"
            )
        from shared.core.templating import whatsapp_template

        spec = whatsapp_template(message.template)
        components: list[dict[str, Any]] = []
        if message.template_params:
            components.append(
                {
                    "type": "body",
                    "parameters": [{"type": "text", "text": p} for p in message.template_params],
                }
            )
        for index, payload in enumerate(message.template_buttons):
            components.append(
                {
                    "type": "button",
                    "sub_type": "quick_reply",
                    "index": str(index),
                    "parameters": [{"type": "payload", "payload": payload}],
                }
            )
        base["type"] = "template"
        base["template"] = {
            "name": spec.meta_name,
            "language": {"code": spec.language},
            "components": components,
        }
        return base

    def send(self, message: OutgoingMessage) -> ProviderResult:
        url = f"{self.settings.META_GRAPH_BASE_URL.rstrip('/')}/{self.sender()}/messages"
        response = self.http(self.session, "POST", url, json=self.payload(message))
        if response.status_code >= 400:
            raise self._classify(response)
        try:
            wamid = response.json()["messages"][0]["id"]
        except (ValueError, KeyError, IndexError, TypeError):
            # Accepted (2xx) but unreadable: it may well go out; do not resend.
            raise PermanentError("unreadable answer to an accepted send", "bad_response") from None
        return ProviderResult(provider_message_id=str(wamid), raw=response.json())

    def _classify(self, response: requests.Response) -> ProviderError:
        code, text = None, response.text[:300]
        try:
            err = response.json().get("error") or {}
            code = str(err.get("code")) if err.get("code") is not None else None
            text = str(err.get("message") or text)[:300]
        except (ValueError, AttributeError):
            pass
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        error = classify_http_status(
            response.status_code,
            code,
            retry_after,
            f"meta {response.status_code}: {text}",
            self.retryable_codes,
            self.permanent_codes,
            self.opted_out_codes,
        )
        if isinstance(error, RetryableError) and code == "131056" and error.retry_after is None:
            error.retry_after = 6.0  # pair rate limit: about one message per 6 s
        return error
