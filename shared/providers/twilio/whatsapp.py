"""WhatsApp through Twilio: free-form inside the 24-hour customer-service
window, an approved Content template (ContentSid + ContentVariables) outside it
(else Twilio answers 63016).

Quick replies (`twilio/quick-reply` Content templates): a button's `id`
may be a variable, so the approved template declares its actions as
`{"title": "Confirmar", "id": "{{5}}"}` … and we send each tap's payload
(`CONFIRM_<appointment id>`) as the variable after the body parameters:
ContentVariables = body params 1..n, then button payloads n+1… (the order of
the template's `.buttons` sidecar). The tap comes back as `ButtonPayload` in
the inbound webhook (shared/providers/twilio/inbound.py). A message with
buttons goes as its Content template inside the window too (in session a
quick-reply template needs no approval), so the buttons are never lost."""

from __future__ import annotations

from typing import Any, ClassVar

from shared.core.config import Settings
from shared.providers.base import OutgoingMessage, PermanentError
from shared.providers.twilio.sms import TwilioSmsProvider, content_variables


class TwilioWhatsAppProvider(TwilioSmsProvider):
    name: ClassVar[str] = "twilio_whatsapp"
    channel: ClassVar[str] = "whatsapp"
    address_prefix: ClassVar[str] = "whatsapp:"
    # 63003 the number is not on WhatsApp, 63016 outside the window without a
    # template, 63024 invalid recipient, 63049 held back by Meta, 63032 the
    # user's number cannot receive: another channel may still reach them.
    permanent_codes: ClassVar[frozenset[str]] = TwilioSmsProvider.permanent_codes | {
        "63003",
        "63049",
        "63032",
    }
    failover_codes: ClassVar[frozenset[str]] = frozenset(
        {"63003", "63016", "63024", "63049", "63032"}
    )

    @classmethod
    def configured(cls, settings: Settings) -> bool:
        return bool(
            settings.TWILIO_ACCOUNT_SID
            and settings.TWILIO_AUTH_TOKEN
            and settings.TWILIO_WHATSAPP_NUMBER
        )

    def sender(self) -> str:
        return self.settings.TWILIO_WHATSAPP_NUMBER.removeprefix("whatsapp:")

    def create_params(self, message: OutgoingMessage) -> dict[str, Any]:
        with_buttons = bool(message.template_buttons) and bool(
            message.template and self.settings.twilio_content_sids.get(message.template)
        )
        if message.in_service_window and message.text and not with_buttons:
            return {"body": message.text[:1600]}
        if not message.template:
            raise PermanentError(
                "outside the 24-hour window WhatsApp needs an approved template", "63016"
            )
        sid = self.settings.twilio_content_sids.get(message.template)
        if not sid:
            raise PermanentError(
                f"no Twilio Content SID configured for template {message.template!r} "
                "(TWILIO_CONTENT_SIDS)",
                "no_content_sid",
            )
        return {"content_sid": sid, "content_variables": content_variables(
            [*message.template_params, *message.template_buttons]
        )}
