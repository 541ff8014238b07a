"""The provider of a channel without credentials outside dev mode
(ARCHITECTURE rule 10): every message fails, with the missing variables as
its reason, before anything is sent. Production never marks a message
`delivered` that went nowhere — least of all an urgent on-call SMS."""

from __future__ import annotations

from typing import ClassVar

from shared.core.config import Settings
from shared.providers.base import OutgoingMessage, PermanentError, Provider, ProviderResult

NOT_CONFIGURED = "channel_not_configured"


class UnconfiguredProvider(Provider):
    name: ClassVar[str] = "unconfigured"

    def __init__(self, settings: Settings, channel: str = ""):
        from shared.providers import live_provider_name, missing_credentials

        super().__init__(settings)
        self.for_channel = channel
        missing = missing_credentials(channel, settings)
        self.reason = (
            f"{channel} is not configured: set {', '.join(missing)} for "
            f"{live_provider_name(channel, settings)} (not sent)"
        )

    @classmethod
    def configured(cls, settings: Settings) -> bool:
        return False

    def sender(self) -> str:
        return f"unconfigured-{self.for_channel}"

    def refusal(self) -> PermanentError:
        return PermanentError(self.reason, NOT_CONFIGURED)

    def send(self, message: OutgoingMessage) -> ProviderResult:
        raise self.refusal()
