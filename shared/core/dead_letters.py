"""Tasks that gave up, kept instead of acked away (ARCHITECTURE rule 12).

Two kinds of failure, told apart by `is_infrastructure_error`:

- the infrastructure is down (PostgreSQL or Redis unreachable, a server
  restarting, too many connections): nothing is wrong with the task, so it
  is retried for as long as the outage lasts, with capped backoff — there
  is no attempt budget to run out of (workers/durable.py);
- anything else (a bug, data PostgreSQL refuses, an inbox that keeps
  refusing): retried a few times, then the task is recorded here, with its
  arguments, and acked. An operator looks with `clinicq dead-letters list`
  and re-publishes with `clinicq dead-letters replay ID|--all` once fixed.

The arguments are what a replay needs, and an inbound payload is a patient's
message: they are never logged, are cleared once the row is replayed, and
`erase_for_contact` drops them with the contact on LGPD erasure. Only the
error class and a masked, bounded reason are readable without them.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from shared.core.errors import ClinicqError
from shared.core.models import DeadLetter
from shared.core.pii import redact
from shared.core.taskqueue import send_task

log = logging.getLogger(__name__)

REASON_MAX_CHARS = 300

# SQLSTATE classes/codes that mean "the server is not there right now", not
# "this statement is wrong": connection exceptions (08), insufficient
# resources (53: too many connections, disk full), operator intervention
# (57P01 admin shutdown, 57P02 crash shutdown, 57P03 cannot connect now),
# and transaction conflicts that a plain re-run resolves (40001, 40P01).
_INFRA_SQLSTATE_PREFIXES = ("08", "53", "57P01", "57P02", "57P03", "40001", "40P01")


def is_infrastructure_error(exc: BaseException) -> bool:
    """True when `exc` says PostgreSQL or Redis is unreachable (retry without
    a budget), False when the task itself failed (retry a few times, then
    dead-letter). A statement timeout or a constraint violation is the
    latter: re-running the same statement forever would not help."""
    import kombu.exceptions
    import redis.exceptions
    from sqlalchemy import exc as sa_exc

    if isinstance(exc, redis.exceptions.ConnectionError | redis.exceptions.TimeoutError):
        return True
    if isinstance(exc, kombu.exceptions.OperationalError):
        return True
    if isinstance(exc, sa_exc.DisconnectionError | sa_exc.TimeoutError):
        return True  # pool: connection invalidated / pool exhausted while the server is slow
    if isinstance(exc, sa_exc.DBAPIError):
        if exc.connection_invalidated:
            return True
        sqlstate = getattr(exc.orig, "sqlstate", None)
        if sqlstate is None:
            # No SQLSTATE: the error came from the client (refused, reset,
            # DNS, timeout), never from the server judging the statement.
            return isinstance(exc, sa_exc.OperationalError | sa_exc.InterfaceError)
        return str(sqlstate).startswith(_INFRA_SQLSTATE_PREFIXES)
    return isinstance(exc, ConnectionError | TimeoutError)


def safe_reason(exc: BaseException) -> str:
    """The error's first line, without SQL/bound parameters, PII masked."""
    text = str(exc).split("[SQL:", 1)[0].strip().splitlines()
    first = text[0] if text else ""
    return redact(first)[:REASON_MAX_CHARS]


def _message_id_from(args: Sequence[Any]) -> uuid.UUID | None:
    """Tasks take the message id first when they are about one message."""
    if args and isinstance(args[0], str):
        try:
            return uuid.UUID(args[0])
        except ValueError:
            return None
    return None


def record(
    session: Session,
    *,
    task_name: str,
    task_id: str | None,
    queue: str | None,
    args: Sequence[Any],
    kwargs: dict[str, Any],
    exc: BaseException,
    attempts: int,
) -> int:
    row = DeadLetter(
        task_name=task_name,
        task_id=task_id,
        queue=queue,
        message_id=_message_id_from(args),
        args=list(args),
        kwargs=dict(kwargs) or None,
        error_class=type(exc).__name__,
        reason=safe_reason(exc),
        attempts=attempts,
    )
    session.add(row)
    session.flush()
    return int(row.id)


@dataclass
class DeadLetterView:
    """What `clinicq dead-letters list` shows: no arguments, no patient data."""

    id: int
    task_name: str
    message_id: uuid.UUID | None
    error_class: str
    reason: str | None
    attempts: int
    created_at: datetime
    replayed_at: datetime | None
    replay_count: int


def list_dead_letters(
    session: Session, include_replayed: bool = False, limit: int | None = None
) -> list[DeadLetterView]:
    """Oldest first; `limit` bounds a screen's read (the CLI lists them all)."""
    query = select(DeadLetter).order_by(DeadLetter.id)
    if not include_replayed:
        query = query.where(DeadLetter.replayed_at.is_(None))
    if limit is not None:
        query = query.limit(limit)
    return [
        DeadLetterView(
            id=row.id,
            task_name=row.task_name,
            message_id=row.message_id,
            error_class=row.error_class,
            reason=row.reason,
            attempts=row.attempts,
            created_at=row.created_at,
            replayed_at=row.replayed_at,
            replay_count=row.replay_count,
        )
        for row in session.scalars(query)
    ]


class NotReplayable(ClinicqError):
    """Unknown id, already replayed, or its arguments were erased."""


def replay(session: Session, ids: Sequence[int] | None) -> list[int]:
    """Re-publish the given dead letters (None: every open one). Each row is
    locked, published, then marked replayed and its arguments cleared in the
    same transaction: a crash before the commit leaves it open (a second
    replay is harmless, tasks are idempotent); a publish failure raises and
    rolls back. A replay that fails again lands here as a new row."""
    query = select(DeadLetter).where(DeadLetter.replayed_at.is_(None)).with_for_update(
        skip_locked=True
    )
    if ids is not None:
        query = query.where(DeadLetter.id.in_(list(ids)))
    rows = list(session.scalars(query.order_by(DeadLetter.id)))
    if ids is not None:
        missing = set(ids) - {row.id for row in rows}
        if missing:
            raise NotReplayable(
                "not open (unknown, already replayed or being replayed): "
                + ", ".join(str(i) for i in sorted(missing))
            )
    replayed = []
    for row in rows:
        if row.args is None and row.kwargs is None:
            raise NotReplayable(f"dead letter {row.id}: its arguments were erased")
        send_task(
            row.task_name,
            row.args or [],
            kwargs=row.kwargs or {},
            # Flower and worker logs must not show the payload.
            argsrepr=f"['{row.message_id}']" if row.message_id else "[…]",
            kwargsrepr="{…}" if row.kwargs else "{}",
        )
        row.replayed_at = datetime.now(UTC)
        row.replay_count += 1
        row.args = None
        row.kwargs = None
        replayed.append(row.id)
        log.info("dead letter replayed", extra={"dead_letter_id": row.id, "task": row.task_name})
    return replayed


def drop(session: Session, ids: Sequence[int]) -> int:
    """Delete dead letters an operator decided not to replay."""
    result = session.execute(delete(DeadLetter).where(DeadLetter.id.in_(list(ids))))
    return int(getattr(result, "rowcount", 0) or 0)


def erase_for_contact(session: Session, message_ids: Any, identity_values: Sequence[str]) -> int:
    """LGPD erasure: drop the dead letters about a person — those naming one
    of their messages (`message_ids`: ids or a subquery), and those whose
    arguments carry one of their identities (an inbound payload that was
    never filed has no message row yet)."""
    from sqlalchemy import ColumnElement, String, cast, or_

    conditions: list[ColumnElement[bool]] = [DeadLetter.message_id.in_(message_ids)]
    for value in identity_values:
        if value:
            conditions.append(cast(DeadLetter.args, String).contains(value))
    result = session.execute(delete(DeadLetter).where(or_(*conditions)))
    return int(getattr(result, "rowcount", 0) or 0)
