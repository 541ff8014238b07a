"""The dev/test provider for a channel without credentials (ARCHITECTURE rule
10): nothing leaves the machine. The message row is the record; the send is
logged (masked) and the message is marked delivered."""

from __future__ import annotations

import logging
from typing import ClassVar

from shared.core.config import Settings
from shared.core.pii import mask_email, mask_phone
from shared.providers.base import OutgoingMessage, Provider, ProviderResult

log = logging.getLogger("clinicq.outbox")


class OutboxProvider(Provider):
    name: ClassVar[str] = "outbox"

    def __init__(self, settings: Settings, channel: str = ""):
        super().__init__(settings)
        self.for_channel = channel

    @classmethod
    def configured(cls, settings: Settings) -> bool:
        return True

    def sender(self) -> str:
        return f"outbox-{self.for_channel}"

    def send(self, message: OutgoingMessage) -> ProviderResult:
        to = mask_email(message.to) if "@" in message.to else mask_phone(message.to)
        log.info(
            "outbox: message not sent to any provider (no credentials for this channel)",
            extra={
                "message_id": message.message_id,
                "channel": message.channel,
                "to": to,
                "template": message.template,
                "chars": len(message.text or ""),
            },
        )
        return ProviderResult(
            provider_message_id=f"outbox-{message.message_id}", status="delivered"
        )
