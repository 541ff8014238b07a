"""The channels clinicq sends on, in one table, and the Celery queues beside them.

What the rest of clinicq looks up about an outbound channel is a row of
`CHANNELS`: the identity kind a channel sends to, its rate
limits and cost estimate (as the names of the settings that hold them), and
the providers that can carry it with the settings each one needs. By
convention a channel's Celery queue, its send task (`clinicq.send.<name>`)
and its template folder (`shared/templates/<name>/`) bear its name.

What is derived from this module rather than written again: the Celery
queues and routes (celeryconfig.py), the supervisor's workers, the send
tasks (shared/outbound/create.py), the templating and settings channel
lists, the rate limits (shared/outbound/ratelimit.py), the cost estimates
(shared/outbound/cost.py), the address each channel sends to (scheduler,
replies, automations, inbox), and the half-configured provider check that
stops start-up. Start-up also checks that every setting a row names exists
(shared.core.config.check_channel_table); tests/unit/test_channel_table.py
checks what cannot be derived (compose services, the send tasks in
workers/tasks/, template folders) and every derived list.

A pure leaf: it imports nothing of clinicq but the enums, so the settings
module can use it. An unknown channel is an `UnknownChannel` (a ValueError),
never a silent default.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from shared.core.enums import IdentityKind


class UnknownChannel(ValueError):
    """A channel name that is not in the table."""

    def __init__(self, channel: str):
        super().__init__(f"unknown channel {channel!r} (channels: {', '.join(CHANNEL_NAMES)})")
        self.channel = channel


@dataclass(frozen=True)
class RateLimit:
    """One global limit a send must respect: its Redis key is
    `clinicq:rl:<key>:<sender>`, plus `:<recipient>` when per_recipient."""

    key: str
    rate_setting: str  # "<count>/<n?><second|minute|hour|day>", e.g. RATE_LIMIT_SMS
    burst_setting: str
    per_recipient: bool = False

    @classmethod
    def named(cls, key: str, per_recipient: bool = False) -> RateLimit:
        """The limit whose settings follow the convention:
        RATE_LIMIT_<KEY> and RATE_LIMIT_<KEY>_BURST ("whatsapp-pair" →
        RATE_LIMIT_WHATSAPP_PAIR)."""
        setting = "RATE_LIMIT_" + key.upper().replace("-", "_")
        return cls(key, setting, setting + "_BURST", per_recipient)


@dataclass(frozen=True)
class ProviderRequirement:
    """A provider (by its name in shared/providers) and the settings its
    credentials are: all set → live; none → outbox (dev) or unconfigured;
    some → a start-up error (`half_configured`)."""

    name: str
    required_settings: tuple[str, ...]


@dataclass(frozen=True)
class Channel:
    name: str
    label: str  # how a patient-facing text names it
    address_kind: str  # the IdentityKind value a message on it is addressed to
    rate_limits: tuple[RateLimit, ...]
    cost_setting: str  # estimate per message when the provider reports no price
    # The provider that carries the channel, keyed by the value of
    # `provider_setting` (the only key is "" when there is no choice).
    providers: Mapping[str, ProviderRequirement]
    provider_setting: str | None = None

    def __post_init__(self) -> None:
        if not self.rate_limits:
            raise ValueError(f"channel {self.name!r} has no rate limit")
        if not self.cost_setting:
            raise ValueError(f"channel {self.name!r} has no cost estimate setting")
        if not self.providers:
            raise ValueError(f"channel {self.name!r} has no provider")
        if (self.provider_setting is None) != (set(self.providers) == {""}):
            raise ValueError(
                f"channel {self.name!r}: providers keyed by {self.provider_setting}'s values, "
                "or by \"\" alone without a provider setting"
            )
        if self.address_kind not in {k.value for k in IdentityKind}:
            raise ValueError(f"channel {self.name!r}: unknown address kind {self.address_kind!r}")

    @property
    def queue(self) -> str:
        return self.name

    @property
    def send_task(self) -> str:
        return f"clinicq.send.{self.name}"

    @property
    def templates(self) -> str:
        """Its folder under the templates directory."""
        return self.name

    @property
    def limits_need_recipient(self) -> bool:
        return any(limit.per_recipient for limit in self.rate_limits)

    def settings_named(self) -> tuple[str, ...]:
        """Every setting this row names (each must exist in Settings)."""
        names = [self.cost_setting]
        for limit in self.rate_limits:
            names += [limit.rate_setting, limit.burst_setting]
        if self.provider_setting:
            names.append(self.provider_setting)
        for provider in self.providers.values():
            names += provider.required_settings
        return tuple(dict.fromkeys(names))


_TWILIO = ("TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN")

CHANNELS: tuple[Channel, ...] = (
    Channel(
        name="email",
        label="email",
        address_kind=IdentityKind.EMAIL.value,
        rate_limits=(RateLimit.named("email"),),
        cost_setting="COST_ESTIMATE_EMAIL",
        providers=MappingProxyType({"": ProviderRequirement("smtp", ("SMTP_HOST",))}),
    ),
    Channel(
        name="sms",
        label="SMS",
        address_kind=IdentityKind.PHONE.value,
        rate_limits=(RateLimit.named("sms"),),
        cost_setting="COST_ESTIMATE_SMS",
        providers=MappingProxyType(
            {"": ProviderRequirement("twilio_sms", (*_TWILIO, "TWILIO_PHONE_NUMBER"))}
        ),
    ),
    Channel(
        name="whatsapp",
        label="WhatsApp",
        # A phone identity; the Meta provider turns it into a wa_id when sending.
        address_kind=IdentityKind.PHONE.value,
        rate_limits=(
            RateLimit.named("whatsapp"),
            # Meta's pair rate limit: one sender to one recipient.
            RateLimit.named("whatsapp-pair", per_recipient=True),
        ),
        cost_setting="COST_ESTIMATE_WHATSAPP",
        provider_setting="WHATSAPP_PROVIDER",
        providers=MappingProxyType(
            {
                "twilio": ProviderRequirement(
                    "twilio_whatsapp", (*_TWILIO, "TWILIO_WHATSAPP_NUMBER")
                ),
                "meta": ProviderRequirement(
                    "meta_whatsapp", ("WHATSAPP_TOKEN", "WHATSAPP_PHONE_NUMBER_ID")
                ),
            }
        ),
    ),
    Channel(
        name="telegram",
        label="Telegram",
        address_kind=IdentityKind.TELEGRAM.value,
        rate_limits=(
            # Bot API: about 30 messages per second per bot, and no more than
            # one message per second to one chat.
            RateLimit.named("telegram"),
            RateLimit.named("telegram-chat", per_recipient=True),
        ),
        cost_setting="COST_ESTIMATE_TELEGRAM",
        providers=MappingProxyType(
            {"": ProviderRequirement("telegram_bot", ("TELEGRAM_BOT_TOKEN",))}
        ),
    ),
)

# Messenger and Instagram Direct: Meta's Send API, to the id Meta gave the
# person on the Page / the Instagram account (shared/providers/meta/messenger.py).
CHANNELS += (
    Channel(
        name="messenger",
        label="Messenger",
        address_kind=IdentityKind.PSID.value,
        rate_limits=(RateLimit.named("messenger"),),
        cost_setting="COST_ESTIMATE_MESSENGER",
        providers=MappingProxyType(
            {"": ProviderRequirement(
                "meta_messenger", ("MESSENGER_PAGE_ID", "MESSENGER_PAGE_TOKEN")
            )}
        ),
    ),
    Channel(
        name="instagram",
        label="Instagram",
        address_kind=IdentityKind.IGSID.value,
        rate_limits=(RateLimit.named("instagram"),),
        cost_setting="COST_ESTIMATE_INSTAGRAM",
        # Its token is INSTAGRAM_TOKEN or, unset, the Page's (MESSENGER_PAGE_TOKEN):
        # Settings checks that one of them is set with the account id.
        providers=MappingProxyType(
            {"": ProviderRequirement("meta_instagram", ("INSTAGRAM_ACCOUNT_ID",))}
        ),
    ),
)

CHANNEL_NAMES: tuple[str, ...] = tuple(channel.name for channel in CHANNELS)
_BY_NAME: Mapping[str, Channel] = MappingProxyType({c.name: c for c in CHANNELS})


@dataclass(frozen=True)
class TaskQueue:
    """A queue that is not a channel's: the tasks routed to it by name pattern."""

    name: str
    tasks: str  # Celery route pattern
    purpose: str = field(default="", compare=False)


# Patients' messages first: the inbound queue has a worker of its own.
INBOUND_QUEUE = TaskQueue(
    "inbound", "clinicq.inbound.*", "file and react to patients' messages, status updates"
)
OTHER_QUEUES: tuple[TaskQueue, ...] = (
    TaskQueue("inbox", "clinicq.inbox.*", "the agent inbox bridge (Chatwoot, Rocket.Chat)"),
    TaskQueue("maintenance", "clinicq.maintenance.*", "IMAP poll and other periodic jobs"),
    TaskQueue("webhooks", "clinicq.webhooks.*", "outbound webhooks to the booking system"),
)

# Every Celery queue, in the order workers and compose list them.
QUEUES: tuple[str, ...] = (
    INBOUND_QUEUE.name,
    *(channel.queue for channel in CHANNELS),
    *(queue.name for queue in OTHER_QUEUES),
)
DEFAULT_QUEUE = "maintenance"


def task_routes() -> dict[str, dict[str, str]]:
    """Celery `task_routes`: each send task to its channel's queue, each
    other queue's task pattern to it."""
    routes = {INBOUND_QUEUE.tasks: {"queue": INBOUND_QUEUE.name}}
    routes |= {channel.send_task: {"queue": channel.queue} for channel in CHANNELS}
    routes |= {queue.tasks: {"queue": queue.name} for queue in OTHER_QUEUES}
    return routes


def send_tasks() -> dict[str, str]:
    """channel -> the name of the Celery task that sends on it."""
    return {channel.name: channel.send_task for channel in CHANNELS}


def is_channel(name: str) -> bool:
    return name in _BY_NAME


def channel(name: str) -> Channel:
    """The row for `name`; UnknownChannel if there is none."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise UnknownChannel(name) from None


def address_kind(name: str) -> str:
    """The identity kind (IdentityKind value) a message on channel `name` is
    addressed to: email → email; sms and whatsapp → phone."""
    return channel(name).address_kind


def channels_addressed_to(kind: str) -> tuple[str, ...]:
    """The channels that send to an identity of `kind`."""
    return tuple(c.name for c in CHANNELS if c.address_kind == kind)


ADDRESS_KIND_LABEL: Mapping[str, str] = MappingProxyType(
    {
        IdentityKind.EMAIL.value: "email address",
        IdentityKind.PHONE.value: "phone number",
        IdentityKind.PSID.value: "Messenger id (PSID)",
        IdentityKind.IGSID.value: "Instagram id (IGSID)",
        IdentityKind.TELEGRAM.value: "Telegram chat id",
    }
)


def rate_limit_settings() -> tuple[str, ...]:
    """Every rate setting the table names (each is validated as a rate)."""
    return tuple(dict.fromkeys(lim.rate_setting for c in CHANNELS for lim in c.rate_limits))


def settings_named() -> tuple[str, ...]:
    """Every setting the table names, for the start-up check that each exists."""
    return tuple(dict.fromkeys(name for c in CHANNELS for name in c.settings_named()))


# --- providers: which one a channel uses, and what it needs --------------------------


def provider_requirement(name: str, settings: object) -> ProviderRequirement:
    """The provider channel `name` uses with these settings (live when its
    credentials are set)."""
    row = channel(name)
    choice = str(getattr(settings, row.provider_setting)) if row.provider_setting else ""
    try:
        return row.providers[choice]
    except KeyError:
        raise ValueError(
            f"{row.provider_setting}={choice!r} names no provider for {name} "
            f"(one of: {', '.join(row.providers)})"
        ) from None


def required_settings_by_provider() -> dict[str, tuple[str, ...]]:
    """provider name -> the settings its credentials are."""
    return {
        provider.name: provider.required_settings
        for row in CHANNELS
        for provider in row.providers.values()
    }


def half_configured(settings: object) -> list[str]:
    """One line per channel whose provider has some of its credentials but not
    all: almost surely a deployment mistake (a variable lost in a secret
    store), so outside dev mode it stops start-up instead of failing sends."""
    problems = []
    for name in CHANNEL_NAMES:
        provider = provider_requirement(name, settings)
        required = provider.required_settings
        missing = [var for var in required if not getattr(settings, var)]
        if missing and len(missing) < len(required):
            present = [var for var in required if var not in missing]
            problems.append(
                f"{', '.join(missing)} must be set: {', '.join(present)} "
                f"{'is' if len(present) == 1 else 'are'} set, so {name} via {provider.name} "
                "is half configured"
            )
    return problems
