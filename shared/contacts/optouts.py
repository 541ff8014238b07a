"""Opt-outs: a patient who said SAIR/PARAR/STOP is never contacted again on
that channel (or any, for `all`). Checked when an outbound message is created
and again by the worker right before the send."""

from __future__ import annotations

import uuid

from sqlalchemy import func, or_, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session
from sqlalchemy.sql import text

from shared.core.enums import OPT_OUT_ALL
from shared.core.models import OptOut
from shared.core.webhook_events import contact_key, record_event


def is_opted_out(session: Session, contact_id: uuid.UUID, channel: str) -> bool:
    return (
        session.scalar(
            select(OptOut.id)
            .where(
                OptOut.contact_id == contact_id,
                OptOut.revoked_at.is_(None),
                or_(OptOut.channel == channel, OptOut.channel == OPT_OUT_ALL),
            )
            .limit(1)
        )
        is not None
    )


def record_opt_out(
    session: Session, contact_id: uuid.UUID, channel: str, keyword: str | None, source: str
) -> bool:
    """Record an opt-out; returns False if one was already active (idempotent)."""
    inserted = session.scalar(
        insert(OptOut)
        .values(contact_id=contact_id, channel=channel, keyword=keyword, source=source)
        .on_conflict_do_nothing(
            index_elements=["contact_id", "channel"], index_where=text("revoked_at IS NULL")
        )
        .returning(OptOut.id)
    )
    if inserted is None:
        return False
    # The booking system is told in the same transaction (the keyword the
    # patient wrote is not sent: a channel and a source are enough).
    record_event(
        session,
        "contact.opted_out",
        {"contact": {"id": str(contact_id)}, "channel": channel, "source": _source_kind(source)},
        ordering_key=contact_key(contact_id),
    )
    return True


def revoke_opt_out(session: Session, contact_id: uuid.UUID, channel: str, source: str) -> bool:
    """Withdraw the contact's active opt-out of `channel` (or `all`); returns
    False if there was none. The booking system is told (`contact.opted_in`)."""
    revoked = session.scalar(
        update(OptOut)
        .where(
            OptOut.contact_id == contact_id,
            OptOut.channel == channel,
            OptOut.revoked_at.is_(None),
        )
        .values(revoked_at=func.now())
        .returning(OptOut.id)
    )
    if revoked is None:
        return False
    record_event(
        session,
        "contact.opted_in",
        {"contact": {"id": str(contact_id)}, "channel": channel, "source": _source_kind(source)},
        ordering_key=contact_key(contact_id),
    )
    return True


def _source_kind(source: str) -> str:
    """`reply`, `api`, or the provider that reported it (`twilio:21610` →
    `twilio`): no free text leaves."""
    return source.split(":", 1)[0][:32]
