"""SCHEDULE_PLAN, parsed: which reminder and survey kinds exist, on which
channel, with which template and when. A pure leaf (no database, no settings;
the channel names come from shared/core/channels.py): configuration
validates the plan at start-up through it.

    kind=channel:template@anchor±offset[?confirmed=<template>|skip]
    e.g.  reminder_24h=sms:lembrete@start-24h
          reminder_1h=whatsapp:lembrete_consulta@start-1h?confirmed=lembrete_confirmado

The channel may be a chain, first channel then fallbacks tried in order when
the one before fails permanently or is not delivered in time
(scheduler/failover.py), each with the template of the same name:

    reminder_1h=whatsapp>sms:lembrete_consulta@start-1h

`?confirmed=` says what the entry sends once the patient has confirmed:
another template (a variant that asks nothing) or `skip`. Without it
(`if_confirmed` None) the default applies (`confirmed_behaviour`): entries
anchored at `start` (the reminders, which ask for an answer) switch to
`lembrete_confirmado`; `booking` and `end` entries are unchanged.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta

from shared.core.channels import CHANNEL_NAMES

SEND_CHANNELS = CHANNEL_NAMES
CANCELLATION_PREFIX = "cancellation_"
CANCELLATION_TEMPLATE = "cancelamento"

_ENTRY = re.compile(
    r"^(?P<kind>[a-z][a-z0-9_]{0,31})=(?P<channel>[a-z]+(?:>[a-z]+)*):(?P<template>[a-z0-9_]{1,64})"
    r"@(?P<anchor>booking|start|end)(?:(?P<sign>[+-])(?P<amount>\d{1,5})(?P<unit>[mhd]))?"
    r"(?:\?confirmed=(?P<confirmed>[a-z0-9_]{1,64}))?$"
)
_UNITS = {"m": "minutes", "h": "hours", "d": "days"}
CONFIRMED_SKIP = "skip"
CONFIRMED_TEMPLATE = "lembrete_confirmado"


@dataclass(frozen=True)
class PlanEntry:
    kind: str
    channel: str
    template: str
    anchor: str  # booking | start | end
    offset: timedelta
    # Channels tried after `channel`, in order (failover); () = none.
    fallbacks: tuple[str, ...] = ()
    # What to send once the appointment is confirmed: a template, "skip", or
    # None for the default (confirmed_behaviour).
    if_confirmed: str | None = None

    @property
    def confirmed_behaviour(self) -> str | None:
        """The template to send instead once confirmed, `skip`, or None
        (unchanged). Default: a reminder (anchored at `start`) becomes
        `lembrete_confirmado`, which asks nothing."""
        if self.if_confirmed is not None:
            return None if self.if_confirmed == self.template else self.if_confirmed
        return CONFIRMED_TEMPLATE if self.anchor == "start" else None

    @property
    def phase(self) -> str:
        """`before` the visit (must precede starts_at) or `after` it."""
        return "after" if self.anchor == "end" else "before"


def parse_schedule_plan(text: str) -> tuple[PlanEntry, ...]:
    """Parse SCHEDULE_PLAN; ValueError names the offending entry."""
    entries: list[PlanEntry] = []
    for raw in (part.strip() for part in text.split(";")):
        if not raw:
            continue
        m = _ENTRY.match(raw)
        if m is None:
            raise ValueError(
                f"entry {raw!r} must look like kind=channel:template@anchor±offset"
                "[?confirmed=template|skip] or kind=channel>fallback:template@anchor±offset "
                "(anchor booking|start|end, offset like 24h, 90m, 2d)"
            )
        chain = parse_channel_chain(m["channel"], f"entry {raw!r}")
        if m["kind"].startswith(CANCELLATION_PREFIX):
            raise ValueError(f"entry {raw!r}: kinds starting {CANCELLATION_PREFIX!r} are reserved")
        amount = int(m["amount"] or 0)
        offset = timedelta(**{_UNITS[m["unit"] or "m"]: amount})
        if m["sign"] == "-":
            offset = -offset
        if m["anchor"] == "start" and offset > timedelta(0):
            raise ValueError(f"entry {raw!r}: a start offset must be negative (before the visit)")
        if m["anchor"] in ("booking", "end") and offset < timedelta(0):
            raise ValueError(f"entry {raw!r}: a {m['anchor']} offset must not be negative")
        if any(e.kind == m["kind"] for e in entries):
            raise ValueError(f"kind {m['kind']!r} appears twice")
        entries.append(
            PlanEntry(
                m["kind"],
                chain[0],
                m["template"],
                m["anchor"],
                offset,
                chain[1:],
                if_confirmed=m["confirmed"],
            )
        )
    return tuple(entries)


def parse_channel_chain(text: str, where: str) -> tuple[str, ...]:
    """`whatsapp>sms` -> ("whatsapp", "sms"): each a channel of the table,
    none twice. ValueError starts with `where` (the entry or setting)."""
    chain = tuple(part.strip() for part in text.split(">"))
    for channel in chain:
        if channel not in SEND_CHANNELS:
            raise ValueError(
                f"{where}: channel {channel!r} must be one of {', '.join(SEND_CHANNELS)}"
            )
    repeated = sorted({c for c in chain if chain.count(c) > 1})
    if repeated:
        raise ValueError(f"{where}: channel {repeated[0]!r} appears twice in the chain")
    return chain
