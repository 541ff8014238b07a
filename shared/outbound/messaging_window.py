"""Meta's messaging windows for Messenger and Instagram Direct, decided before
a send so a message Meta would refuse is never sent.

Meta's policy (Messenger Platform, "Send a Message"; the same for Instagram):
- the standard messaging window: within 24 hours of the person's last message
  to the Page / account, anything may be sent (`messaging_type: RESPONSE`);
- after it, only a message under a tag; the one a clinic has is
  `HUMAN_AGENT`: a person's (an agent's) reply, within 7 days of the
  person's last message. Automated messages (reminders, acknowledgements)
  outside the 24 hours are not allowed at all.

The window is the person's last message *on that channel* (their PSID or
IGSID wrote to us), not the contact's last message anywhere: a patient linked
to a Messenger id who last wrote on WhatsApp has no open Messenger window.
WhatsApp's rule (shared.outbound.delivery.in_service_window) is the same idea
on the contact's active conversation; the agent inbox's routing
(shared.inbox.sync.choose_route) asks `decide` too, so a reply it routes to
Messenger is not refused at send time.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from shared.core.config import Settings
from shared.core.enums import Channel, Direction
from shared.core.models import Message

# The channels under Meta's messaging windows.
META_DM_CHANNELS = frozenset({Channel.MESSENGER.value, Channel.INSTAGRAM.value})
HUMAN_AGENT_TAG = "HUMAN_AGENT"
# A reply an agent wrote in the inbox (shared.inbox.sync.AGENT_REPLY_PURPOSE):
# the only purpose the human-agent tag may carry.
AGENT_REPLY_PURPOSE = "agent_reply"
OUTSIDE_WINDOW_CODE = "outside_window"


@dataclass(frozen=True)
class WindowDecision:
    allowed: bool
    tag: str | None = None  # None: inside the standard window (RESPONSE)
    reason: str | None = None  # why not allowed


def last_inbound_at(
    session: Session, contact_id: uuid.UUID | None, channel: str
) -> datetime | None:
    """When the contact last wrote to us on `channel`."""
    if contact_id is None:
        return None
    return session.scalar(
        select(func.max(Message.created_at)).where(
            Message.contact_id == contact_id,
            Message.channel == channel,
            Message.direction == Direction.INBOUND.value,
        )
    )


def decide(
    channel: str, last_inbound: datetime | None, purpose: str | None, settings: Settings,
    now: datetime | None = None,
) -> WindowDecision:
    """May a message of `purpose` go out on `channel` now, and under which tag?"""
    now = now or datetime.now(UTC)
    label = "Messenger" if channel == Channel.MESSENGER.value else "Instagram"
    if last_inbound is None:
        return WindowDecision(
            False, reason=f"{label}: the person never wrote to us on {channel}; Meta allows "
            "messages only after they do"
        )
    age = now - last_inbound
    if age < timedelta(hours=settings.META_DM_WINDOW_HOURS):
        return WindowDecision(True)
    if purpose == AGENT_REPLY_PURPOSE and age < timedelta(days=settings.META_DM_HUMAN_AGENT_DAYS):
        return WindowDecision(True, tag=HUMAN_AGENT_TAG)
    hours = int(age.total_seconds() // 3600)
    if purpose == AGENT_REPLY_PURPOSE:
        why = (f"outside {label}'s human-agent window: the person last wrote {hours} h ago "
               f"(an agent may answer within {settings.META_DM_HUMAN_AGENT_DAYS:g} days)")
    else:
        why = (f"outside {label}'s 24-hour messaging window: the person last wrote {hours} h "
               "ago and Meta allows automated messages only within 24 hours")
    return WindowDecision(False, reason=why)


def window_for(session: Session, message: Message, settings: Settings) -> WindowDecision:
    """`decide` for an outbound row."""
    return decide(
        message.channel,
        last_inbound_at(session, message.contact_id, message.channel),
        message.purpose,
        settings,
    )
