"""Opt-outs: a patient who said SAIR/PARAR/STOP is never contacted again on
that channel (or any, for `all`). Checked when an outbound message is created
and again by the worker right before the send."""

from __future__ import annotations

import uuid

from sqlalchemy import or_, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session
from sqlalchemy.sql import text

from shared.core.enums import OPT_OUT_ALL
from shared.core.models import OptOut


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
    return inserted is not None
