"""Providers, one module each, behind a lazy registry.

`provider_for(channel, settings)` picks the live provider when its credentials
are configured, else the `outbox` (nothing leaves the machine). Modules are
imported on first use, so a worker for one queue never imports the others'
SDKs. `describe_channels` is what the supervisor prints at start-up.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from shared.config import Settings

if TYPE_CHECKING:
    from shared.providers.base import Provider

# name -> "module:Class"
PROVIDERS: dict[str, str] = {
    "smtp": "shared.providers.smtp:SmtpProvider",
    "twilio_sms": "shared.providers.twilio_sms:TwilioSmsProvider",
    "twilio_whatsapp": "shared.providers.twilio_whatsapp:TwilioWhatsAppProvider",
    "meta_whatsapp": "shared.providers.meta_whatsapp:MetaWhatsAppProvider",
    "outbox": "shared.providers.outbox:OutboxProvider",
}

_MISSING = {
    "smtp": ("SMTP_HOST",),
    "twilio_sms": ("TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN", "TWILIO_PHONE_NUMBER"),
    "twilio_whatsapp": ("TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN", "TWILIO_WHATSAPP_NUMBER"),
    "meta_whatsapp": ("WHATSAPP_TOKEN", "WHATSAPP_PHONE_NUMBER_ID"),
}


def provider_class(name: str) -> type[Provider]:
    module, _, cls = PROVIDERS[name].partition(":")
    return getattr(importlib.import_module(module), cls)


def live_provider_name(channel: str, settings: Settings) -> str:
    """The provider this channel would use with credentials."""
    if channel == "email":
        return "smtp"
    if channel == "sms":
        return "twilio_sms"
    if channel == "whatsapp":
        return "meta_whatsapp" if settings.WHATSAPP_PROVIDER == "meta" else "twilio_whatsapp"
    raise KeyError(f"no provider for channel {channel!r}")


def provider_name_for(channel: str, settings: Settings) -> str:
    name = live_provider_name(channel, settings)
    missing = [var for var in _MISSING[name] if not getattr(settings, var)]
    return "outbox" if missing else name


# (channel, id(settings)) -> (settings, provider); settings are not hashable and
# are one object per process, so identity is the right key.
_INSTANCES: dict[tuple[str, int], tuple[Settings, Provider]] = {}


def provider_for(channel: str, settings: Settings) -> Provider:
    """One provider instance per channel and settings, per process."""
    key = (channel, id(settings))
    cached = _INSTANCES.get(key)
    if cached is not None and cached[0] is settings:
        return cached[1]
    name = provider_name_for(channel, settings)
    cls = provider_class(name)
    provider = cls(settings, channel) if name == "outbox" else cls(settings)  # type: ignore[call-arg]
    _INSTANCES[key] = (settings, provider)
    return provider


def provider_by_name(name: str, channel: str, settings: Settings) -> Provider | None:
    """A named provider (the reconciler asks the one that sent a message), or
    None when this process has no credentials for it (never a default host)."""
    if name not in PROVIDERS:
        return None
    if name == provider_name_for(channel, settings):
        return provider_for(channel, settings)
    if name != "outbox" and any(not getattr(settings, var) for var in _MISSING[name]):
        return None
    cls = provider_class(name)
    return cls(settings, channel) if name == "outbox" else cls(settings)  # type: ignore[call-arg]


def describe_channels(settings: Settings) -> list[str]:
    """One line per channel: live provider, or outbox and which variables are missing."""
    lines = []
    for channel in ("email", "sms", "whatsapp"):
        name = live_provider_name(channel, settings)
        missing = [var for var in _MISSING[name] if not getattr(settings, var)]
        if missing:
            lines.append(
                f"{channel}: OUTBOX (not sent anywhere; set {', '.join(missing)} for {name})"
            )
        elif name == "smtp":
            mode = (
                "STARTTLS"
                if settings.SMTP_STARTTLS
                else "implicit TLS"
                if settings.SMTP_SECURE
                else "plain"
            )
            lines.append(
                f"{channel}: live via smtp ({settings.SMTP_HOST}:{settings.SMTP_PORT}, {mode})"
            )
        else:
            lines.append(f"{channel}: live via {name}")
    return lines
