"""Providers, one module each, behind a lazy registry.

`provider_for(channel, settings)` picks the live provider when its credentials
are configured. Without them (ARCHITECTURE rule 10): in dev mode
(`CLINICQ_DEV_MODE`, set by `make run` and the tests) the `outbox`, which
sends nothing and marks the message delivered; otherwise the `unconfigured`
provider, which fails every message with the missing variables as its reason
— production never fakes a delivery. Modules are imported on first use, so a
worker for one queue never imports the others' SDKs. `describe_channels` is
what the supervisor and `clinicq channels` print; `channel_states` is what
/readyz reports.

What a provider declares (class attributes, shared/providers/base.py) is read
here by name, so the delivery engine names no vendor: `vendor_declarations`
(a vendor's providers, status vocabulary and opted-out codes, for its status
webhooks) imports only that vendor's package, and `can_lookup` only the named
provider's module. A provider module imports its SDK when it is constructed,
so reading declarations loads no SDK.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING

from shared.core.channels import CHANNEL_NAMES, provider_requirement, required_settings_by_provider
from shared.core.config import Settings

if TYPE_CHECKING:
    from shared.core.enums import MessageStatus
    from shared.providers.base import Provider

# name -> "module:Class"
PROVIDERS: dict[str, str] = {
    "smtp": "shared.providers.email.smtp:SmtpProvider",
    "twilio_sms": "shared.providers.twilio.sms:TwilioSmsProvider",
    "twilio_whatsapp": "shared.providers.twilio.whatsapp:TwilioWhatsAppProvider",
    "meta_whatsapp": "shared.providers.meta.whatsapp:MetaWhatsAppProvider",
    "meta_messenger": "shared.providers.meta.messenger:MetaMessengerProvider",
    "meta_instagram": "shared.providers.meta.instagram:MetaInstagramProvider",
    "telegram_bot": "shared.providers.telegram.bot:TelegramBotProvider",
    "outbox": "shared.providers.outbox:OutboxProvider",
    "unconfigured": "shared.providers.unconfigured:UnconfiguredProvider",
}

CHANNELS = CHANNEL_NAMES

# Providers that stand in for a live one (constructed with the channel).
_STAND_INS = frozenset({"outbox", "unconfigured"})

# provider name -> the settings its credentials are (shared/core/channels.py).
_MISSING = required_settings_by_provider()


def provider_class(name: str) -> type[Provider]:
    module, _, cls = PROVIDERS[name].partition(":")
    return getattr(importlib.import_module(module), cls)


def can_lookup(name: str) -> bool:
    """Whether the named provider can say if it accepted a message (the
    reconciler asks it rather than guess), read from its class."""
    return name in PROVIDERS and provider_class(name).can_lookup


@dataclass(frozen=True)
class VendorDeclarations:
    """What a vendor's providers declare, for its status webhooks."""

    vendor: str
    providers: tuple[str, ...]  # the names messages.provider holds
    status_map: Mapping[str, MessageStatus]
    opted_out_codes: frozenset[str]


def vendor_package(name: str) -> str:
    """The vendor package a provider's module is in, from its registry entry
    without importing it: "twilio" for shared.providers.twilio.sms, "" for
    the stand-ins (modules directly under shared/providers/)."""
    module = PROVIDERS[name].partition(":")[0]
    return module.removeprefix(f"{__name__}.").rpartition(".")[0]


@functools.lru_cache(maxsize=16)
def vendor_declarations(vendor: str) -> VendorDeclarations:
    """The providers in shared/providers/<vendor>/ and their declarations
    together; only that package is imported. An unknown vendor has no
    providers and an empty status map."""
    classes = [
        provider_class(name) for name in PROVIDERS if vendor and vendor_package(name) == vendor
    ]
    status_map: dict[str, MessageStatus] = {}
    opted_out: frozenset[str] = frozenset()
    for cls in classes:
        status_map.update(cls.status_map)
        opted_out |= cls.opted_out_codes
    return VendorDeclarations(
        vendor,
        tuple(cls.name for cls in classes),
        MappingProxyType(status_map),
        opted_out,
    )


def failover_codes(name: str | None) -> frozenset[str]:
    """The error codes for which the named provider's failed message has its
    next channel tried (its `failover_codes` declaration); none for an
    unknown provider."""
    if not name or name not in PROVIDERS:
        return frozenset()
    return provider_class(name).failover_codes


def live_provider_name(channel: str, settings: Settings) -> str:
    """The provider this channel would use with credentials."""
    return provider_requirement(channel, settings).name


def missing_credentials(channel: str, settings: Settings) -> list[str]:
    """The variables this channel's live provider needs and lacks."""
    return [var for var in _MISSING[live_provider_name(channel, settings)]
            if not getattr(settings, var)]


def provider_name_for(channel: str, settings: Settings) -> str:
    name = live_provider_name(channel, settings)
    if not missing_credentials(channel, settings):
        return name
    return "outbox" if settings.CLINICQ_DEV_MODE else "unconfigured"


def channel_states(settings: Settings) -> dict[str, dict[str, object]]:
    """Per channel: `live` (provider), `outbox` (dev mode, nothing sent) or
    `unconfigured` (outside dev mode: its messages fail), with what is missing."""
    states: dict[str, dict[str, object]] = {}
    for channel in CHANNELS:
        name = provider_name_for(channel, settings)
        state: dict[str, object] = {"state": name if name in _STAND_INS else "live"}
        if name in _STAND_INS:
            state["missing"] = missing_credentials(channel, settings)
        else:
            state["provider"] = name
        states[channel] = state
    return states


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
    provider = cls(settings, channel) if name in _STAND_INS else cls(settings)  # type: ignore[call-arg]
    _INSTANCES[key] = (settings, provider)
    return provider


def provider_by_name(name: str, channel: str, settings: Settings) -> Provider | None:
    """A named provider (the reconciler asks the one that sent a message), or
    None when this process has no credentials for it (never a default host)."""
    if name not in PROVIDERS:
        return None
    if name == provider_name_for(channel, settings):
        return provider_for(channel, settings)
    if name not in _STAND_INS and any(not getattr(settings, var) for var in _MISSING[name]):
        return None
    cls = provider_class(name)
    return cls(settings, channel) if name in _STAND_INS else cls(settings)  # type: ignore[call-arg]


def describe_channels(settings: Settings) -> list[str]:
    """One line per channel: live provider, or outbox / unconfigured and which
    variables are missing."""
    lines = []
    for channel in CHANNELS:
        name = live_provider_name(channel, settings)
        missing = missing_credentials(channel, settings)
        if missing and settings.CLINICQ_DEV_MODE:
            lines.append(
                f"{channel}: OUTBOX (dev mode, not sent anywhere; set {', '.join(missing)} "
                f"for {name})"
            )
        elif missing:
            lines.append(
                f"{channel}: UNCONFIGURED (its messages fail; set {', '.join(missing)} "
                f"for {name})"
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
        elif name == "telegram_bot":
            # Sending needs only the token; receiving needs the webhook secret
            # and `clinicq telegram set-webhook` once.
            inbound = (
                "inbound on /webhooks/telegram (register it: clinicq telegram set-webhook)"
                if settings.TELEGRAM_WEBHOOK_SECRET
                else "send only: set TELEGRAM_WEBHOOK_SECRET to receive"
            )
            lines.append(f"{channel}: live via {name} ({inbound})")
        else:
            lines.append(f"{channel}: live via {name}")
    return lines
