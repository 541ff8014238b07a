"""One scheduler tick: claim due rows, create their messages, commit, enqueue.

Exactly once, with any number of schedulers running (rule 4):
- due rows are locked with `FOR UPDATE SKIP LOCKED` over the partial index
  `ix_scheduled_pending_due` (pending rows only, so a tick's cost follows
  the due work, not the table size); a second scheduler skips locked rows;
- in the same transaction each row becomes `sent` (handed to the outbound
  pipeline) with its message created under the idempotency key
  `sched:<row id>:v<appointment version>` — a row exists once per version, and
  its message once per key;
- only after the commit are the sends enqueued. A crash between commit and
  enqueue leaves the message `queued`, which the reconciler re-enqueues.

The appointment is re-read here (status, version, start) and again by the send
worker (`shared.scheduling.planner.reminder_still_valid`): a reschedule racing this
claim produces at most a message that is skipped at send time.
"""

from __future__ import annotations

import logging
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from shared.core import metrics
from shared.core.config import Settings
from shared.core.db import session_scope
from shared.core.enums import AppointmentStatus, ScheduledStatus
from shared.core.models import Appointment, Contact, ScheduledMessage
from shared.outbound.create import (
    OutboundCreated,
    OutboundRequest,
    create_outbound_messages_bulk,
    enqueue_send,
)
from shared.scheduling.calendar import calendar_flag
from shared.scheduling.plan import CONFIRMED_SKIP
from shared.scheduling.planner import (
    confirmed_skip_reason,
    confirmed_template,
    contact_addresses,
    phase_of,
    place,
    template_data,
    validity_problem,
)
from shared.scheduling.quiet_hours import QuietHours

log = logging.getLogger(__name__)


@dataclass
class BatchResult:
    claimed: int = 0
    created: int = 0
    skipped: int = 0
    deferred: int = 0
    to_enqueue: list[tuple[uuid.UUID, str]] = field(default_factory=list)


@dataclass
class TickResult:
    batches: int = 0
    claimed: int = 0
    created: int = 0
    enqueued: int = 0
    skipped: int = 0
    deferred: int = 0
    seconds: float = 0.0


def due_rows_query(now: datetime, batch_size: int) -> Select[ScheduledMessage]:
    """The due-rows scan (bench prints its plan)."""
    return (
        select(ScheduledMessage)
        .where(ScheduledMessage.status == ScheduledStatus.PENDING.value)
        .where(ScheduledMessage.due_at <= now)
        .order_by(ScheduledMessage.due_at)
        .limit(batch_size)
        .with_for_update(skip_locked=True)
    )


def _skip(row: ScheduledMessage, reason: str, now: datetime) -> None:
    row.status = ScheduledStatus.SKIPPED.value
    row.reason = reason
    row.claimed_at = now
    row.updated_at = now


def claim_batch(
    session: Session, settings: Settings, now: datetime, batch_size: int
) -> BatchResult:
    """Claim up to `batch_size` due rows in the caller's transaction."""
    result = BatchResult()
    rows = list(session.scalars(due_rows_query(now, batch_size)))
    result.claimed = len(rows)
    if not rows:
        return result
    for row in rows:
        metrics.SCHEDULER_LAG.observe(max(0.0, (now - row.due_at).total_seconds()))
    # A fresh statement (READ COMMITTED): sees any change committed before our
    # row locks were granted.
    appts = {
        a.id: a
        for a in session.scalars(
            select(Appointment).where(Appointment.id.in_({r.appointment_id for r in rows}))
        )
    }
    contact_ids = list({a.contact_id for a in appts.values()})
    contacts = {
        c.id: c for c in session.scalars(select(Contact).where(Contact.id.in_(contact_ids)))
    }
    addresses = contact_addresses(session, contact_ids)
    quiet = QuietHours.from_settings(settings)

    # No autoflush inside the loop: the row updates and message events are
    # flushed together at the end (executemany) instead of one round trip
    # each before every query create_outbound_message makes.
    # The messages of the whole batch are created together at the end (one
    # multi-row INSERT with their events), not one by one.
    with session.no_autoflush:
        wanted: list[tuple[ScheduledMessage, OutboundRequest]] = []
        for row in rows:
            request = _claim_row(settings, row, appts, contacts, addresses, quiet, now, result)
            if request is not None:
                wanted.append((row, request))
        created_all = create_outbound_messages_bulk(session, [req for _, req in wanted])
        for (row, _), created in zip(wanted, created_all, strict=True):
            _record_created(row, created, now, result)
    session.flush()
    return result


def _claim_row(
    settings: Settings,
    row: ScheduledMessage,
    appts: dict[uuid.UUID, Appointment],
    contacts: dict[uuid.UUID, Contact],
    addresses: dict[uuid.UUID, dict[str, str]],
    quiet: QuietHours,
    now: datetime,
    result: BatchResult,
) -> OutboundRequest | None:
    """Settle the row (skipped, deferred) or return the message it needs."""
    appt = appts.get(row.appointment_id)
    phase = phase_of(row.kind, settings)
    problem = validity_problem(appt, phase, row.appointment_version, now)
    if problem is not None or appt is None:
        _skip(row, problem or "appointment no longer exists", now)
        result.skipped += 1
        return None
    # The tick may run late (scheduler down, backlog) or the calendar may
    # have changed since booking: quiet hours are checked again now.
    if quiet.applies_to(row.channel) and quiet.is_quiet(now):
        placed = place(phase, row.channel, now, appt, quiet, now)
        if placed.due_at is None:
            _skip(row, placed.skip_reason or "quiet hours", now)
            result.skipped += 1
        else:
            row.due_at, row.reason, row.updated_at = placed.due_at, placed.moved_reason, now
            result.deferred += 1
        return None
    to_address = addresses.get(appt.contact_id, {}).get(row.channel)
    if to_address is None:
        _skip(row, f"contact has no address for {row.channel}", now)
        result.skipped += 1
        return None
    template = row.template
    if appt.status == AppointmentStatus.CONFIRMED.value:
        # The patient answered already: never ask "confirm?" again. Checked
        # again at send time (planner.confirmed_variant / reminder_still_valid).
        template = confirmed_template(row.kind, row.channel, row.template, settings)
        if template == CONFIRMED_SKIP:
            _skip(row, confirmed_skip_reason(row.kind), now)
            result.skipped += 1
            return None
    return OutboundRequest(
        channel=row.channel,
        to_address=to_address,
        contact_id=appt.contact_id,
        template=template,
        template_data=template_data(appt, contacts.get(appt.contact_id), settings, phase),
        purpose="reminder",
        idempotency_key=f"sched:{row.id}:v{row.appointment_version}",
        metadata={
            "scheduled_message_id": row.id,
            "appointment_id": str(appt.id),
            "appointment_version": row.appointment_version,
            "kind": row.kind,
            "phase": phase,
            # e-mails that carry the appointment's .ics (request | cancel)
            **calendar_flag(row.channel, row.template),
        },
    )


def _record_created(
    row: ScheduledMessage, created: OutboundCreated, now: datetime, result: BatchResult
) -> None:
    row.message_id = created.message_id
    row.claimed_at = now
    row.updated_at = now
    if created.status == "skipped":
        row.status, row.reason = ScheduledStatus.SKIPPED.value, created.reason
        result.skipped += 1
    else:
        row.status = ScheduledStatus.SENT.value
        result.created += 1
    if created.should_enqueue:
        result.to_enqueue.append((created.message_id, row.channel))


def _enqueue_all(messages: list[tuple[uuid.UUID, str]]) -> int:
    for message_id, channel in messages:
        enqueue_send(message_id, channel)
    return len(messages)


def run_tick(
    settings: Settings, now: datetime | None = None, max_seconds: float | None = None
) -> TickResult:
    """Claim batches until the due rows are drained (or the time budget is
    spent). Each batch commits before its sends are enqueued; the enqueueing
    of a committed batch runs on a helper thread while the next batch is
    claimed (both mostly wait on sockets), and the tick returns only when
    every enqueue is done. A crash in between leaves committed messages
    `queued`: the reconciler re-enqueues them."""
    started = time.monotonic()
    budget = max_seconds if max_seconds is not None else max(settings.SCHEDULER_TICK_SECONDS, 5.0)
    tick = TickResult()
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="enqueue") as pool:
        pending: list[Future[int]] = []
        while True:
            at = now or datetime.now(UTC)
            with session_scope() as session:
                batch = claim_batch(session, settings, at, settings.SCHEDULER_BATCH_SIZE)
            if batch.to_enqueue:
                pending.append(pool.submit(_enqueue_all, batch.to_enqueue))
            tick.batches += 1
            tick.claimed += batch.claimed
            tick.created += batch.created
            tick.skipped += batch.skipped
            tick.deferred += batch.deferred
            if batch.claimed < settings.SCHEDULER_BATCH_SIZE:
                break
            if time.monotonic() - started > budget:
                break
        tick.enqueued = sum(f.result() for f in pending)
    tick.seconds = time.monotonic() - started
    metrics.SCHEDULER_CLAIMED.inc(tick.claimed)
    metrics.SCHEDULER_CLAIMED_PER_TICK.observe(tick.claimed)
    if tick.claimed:
        log.info(
            "scheduler tick",
            extra={
                "claimed": tick.claimed,
                "messages_created": tick.created,
                "enqueued": tick.enqueued,
                "skipped": tick.skipped,
                "deferred": tick.deferred,
                "seconds": round(tick.seconds, 3),
            },
        )
    return tick
