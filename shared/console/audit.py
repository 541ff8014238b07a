"""The console's audit trail: every view of a patient's data and every action,
in the existing audit_events table (who: `console_user:<id>`; subject:
`contact:<uuid>` / `appointment:<uuid>` / `conversation:<uuid>`; detail holds
ids and counts only, never names, addresses or message text)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from shared.core.models import AuditEvent

PAGE_SIZE = 100


def audit(
    session: Session, actor: str, action: str, subject: str, detail: dict[str, Any] | None = None
) -> None:
    session.add(AuditEvent(actor=actor[:64], action=action[:64], subject=subject[:128],
                           detail=detail))


def audit_page(
    session: Session, before_id: int | None = None, actor: str | None = None
) -> Sequence[AuditEvent]:
    """Newest first, keyset-paged by id (the primary key index)."""
    query = select(AuditEvent).order_by(AuditEvent.id.desc()).limit(PAGE_SIZE)
    if before_id is not None:
        query = query.where(AuditEvent.id < before_id)
    if actor:
        query = query.where(AuditEvent.actor == actor)
    return session.scalars(query).all()


def audit_view(
    session: Session, actor: str, action: str, subject: str, detail: dict[str, Any] | None = None
) -> None:
    """A page view's audit row, committed without waiting for the WAL flush:
    a page view is a read, and making every view wait for an fsync held a
    console worker for most of a cheap page's time under load. PostgreSQL
    keeps the row consistent; a database crash could lose at most the last
    moments of view records (wal_writer_delay), never an action's — actions
    keep `audit()` and a synchronous commit."""
    session.execute(text("SET LOCAL synchronous_commit = off"))
    audit(session, actor, action, subject, detail)
