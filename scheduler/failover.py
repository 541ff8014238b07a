"""Failover: a scheduled message's next channel, exactly once.

A scheduled row whose plan names a chain (`reminder_1h=whatsapp>sms:…`,
CANCELLATION_NOTICE_FALLBACK) is planned `fallback_state = 'watching'` with
the channels still to try in `fallback_channels`. Each scheduler run of
`run_failover` claims watched rows whose latest message (the row's message,
or its latest fallback) has settled, with `FOR UPDATE SKIP LOCKED` over the
partial index `ix_scheduled_fallback_watching`, and decides in the same
transaction:

- delivered or read → nothing to do (`delivered`);
- failed with one of its provider's declared `failover_codes` (WhatsApp: not
  a WhatsApp user, re-engagement required, template paused or rejected) →
  the next channel now;
- still only `sent` FAILOVER_DELIVERY_DEADLINE_MINUTES after it was sent →
  the next channel at that deadline; a deadline in quiet hours waits for
  their end (`fallback_due_at`) if that is still before the visit, else
  there is no fallback and the reason says why;
- skipped because the patient opted out of that channel → the next channel;
- failed otherwise, or skipped otherwise → no fallback (`none`, with the reason).

Never after the visit started, never for an appointment cancelled or moved
since (the row's version), never to a channel the patient opted out of
(`fallback_skipped: opted_out`, the next channel of the chain is tried) or
has no address on. The fallback is an ordinary outbound message with the
template of the same name on its channel, metadata `fallback_of` naming the
message it replaces, and the idempotency key
`fallback:<row id>:v<appointment version>:<channel>`, unique in the table: a
second scheduler (or a retried run) cannot make a second one. The send
worker's pre-send check (planner.reminder_still_valid) runs for it too.
Sends are enqueued only after the commit; a crash in between leaves the
message `queued` for the reconciler.

On-call alerts (ONCALL_ALERT_FALLBACK) are not scheduled rows: the alert SMS
carries its chain in its metadata (`failover_channels`) and
`run_alert_failover` finds alerts of the last day that failed with a
failover code or passed the deadline and have no fallback yet; the fallback
(to ONCALL_PHONE on WhatsApp or ONCALL_EMAIL) has the key
`fallback:<message id>:<channel>` and carries the rest of the chain. Alerts
go to staff about an urgent patient: no quiet hours, no patient opt-outs.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import Select, String, and_, cast, exists, func, or_, select, text
from sqlalchemy.orm import Session, aliased

from shared.contacts.optouts import is_opted_out
from shared.core.config import Settings
from shared.core.db import session_scope
from shared.core.enums import MessageStatus
from shared.core.models import Appointment, Contact, Message, ScheduledMessage
from shared.outbound.create import OutboundRequest, create_outbound_message, enqueue_send
from shared.providers import failover_codes
from shared.scheduling.planner import contact_addresses, phase_of, template_data, validity_problem
from shared.scheduling.quiet_hours import QuietHours

log = logging.getLogger(__name__)

WATCHING = "watching"
# Message statuses the scan acts on without waiting for the deadline.
_SETTLED = (
    MessageStatus.DELIVERED.value,
    MessageStatus.READ.value,
    MessageStatus.FAILED.value,
    MessageStatus.SKIPPED.value,
)


@dataclass
class FailoverResult:
    examined: int = 0
    created: int = 0
    deferred: int = 0
    ended: int = 0
    to_enqueue: list[tuple[uuid.UUID, str]] = field(default_factory=list)


def deadline_of(settings: Settings) -> timedelta:
    return timedelta(minutes=settings.FAILOVER_DELIVERY_DEADLINE_MINUTES)


def watched_rows_query(
    now: datetime, deadline: timedelta, batch_size: int
) -> Select[ScheduledMessage, Message]:
    """Watched rows whose latest message settled or passed its deadline."""
    latest = func.coalesce(ScheduledMessage.fallback_message_id, ScheduledMessage.message_id)
    sent_at = func.coalesce(Message.sent_at, Message.updated_at)
    return (
        select(ScheduledMessage, Message)
        .join(Message, Message.id == latest)
        .where(ScheduledMessage.fallback_state == WATCHING)
        .where(
            or_(ScheduledMessage.fallback_due_at.is_(None), ScheduledMessage.fallback_due_at <= now)
        )
        .where(
            or_(
                Message.status.in_(_SETTLED),
                and_(Message.status == MessageStatus.SENT.value, sent_at <= now - deadline),
            )
        )
        .order_by(ScheduledMessage.id)
        .limit(batch_size)
        .with_for_update(of=ScheduledMessage, skip_locked=True)
    )


def _end(row: ScheduledMessage, state: str, reason: str | None, now: datetime) -> None:
    row.fallback_state, row.fallback_reason, row.updated_at = state, reason, now


def _trigger(current: Message, settings: Settings) -> tuple[str | None, str | None]:
    """(why the next channel is due, None) or (None, the state to end in)."""
    status = current.status
    if status in (MessageStatus.DELIVERED.value, MessageStatus.READ.value):
        return None, "delivered"
    if status == MessageStatus.FAILED.value:
        code = current.error_code or ""
        if code and code in failover_codes(current.provider):
            return f"{current.channel} failed permanently ({code})", None
        return None, "none"
    if status == MessageStatus.SKIPPED.value:
        # Opted out of this channel only: the chain's other channels are the
        # patient's to keep (an opt-out of all is caught per channel below).
        if (current.status_reason or "").startswith(f"recipient opted out of {current.channel}"):
            return f"{current.channel} skipped (patient opted out of it)", None
        return None, "none"
    return (
        f"no delivery on {current.channel} within "
        f"{settings.FAILOVER_DELIVERY_DEADLINE_MINUTES:g} min of sending",
        None,
    )


def _remaining(row: ScheduledMessage, current: Message) -> list[str]:
    """The chain's channels after the one `current` went on."""
    chain = [c for c in (row.fallback_channels or "").split(",") if c]
    if current.channel in chain:
        return chain[chain.index(current.channel) + 1 :]
    return chain  # current is the row's own (first) channel


def _decide(
    session: Session,
    settings: Settings,
    row: ScheduledMessage,
    current: Message,
    appt: Appointment | None,
    contact: Contact | None,
    addresses: dict[str, str],
    quiet: QuietHours,
    now: datetime,
    result: FailoverResult,
) -> None:
    why, end_state = _trigger(current, settings)
    if why is None:
        reason = None
        if end_state == "none":
            reason = (
                f"{current.channel} message {current.status}"
                f"{f' ({current.error_code})' if current.error_code else ''}: "
                "not a failover case"
            )
        _end(row, end_state or "none", reason, now)
        result.ended += 1
        return
    phase = phase_of(row.kind, settings)
    problem = validity_problem(appt, phase, row.appointment_version, now)
    if problem is None and appt is not None and phase != "after" and now >= appt.starts_at:
        problem = "appointment already started"  # cancellation notices too
    if problem is not None or appt is None:
        _end(row, "skipped", f"{why}; no fallback: {problem}", now)
        result.ended += 1
        return
    notes: list[str] = []
    remaining = _remaining(row, current)
    for position, channel in enumerate(remaining):
        to_address = addresses.get(channel)
        if to_address is None:
            notes.append(f"fallback_skipped: no address ({channel})")
            continue
        if is_opted_out(session, appt.contact_id, channel):
            notes.append(f"fallback_skipped: opted_out ({channel})")
            continue
        if quiet.applies_to(channel) and quiet.is_quiet(now):
            allowed = quiet.next_allowed(now)
            if allowed is None or (phase != "after" and allowed >= appt.starts_at):
                notes.append(
                    f"fallback_skipped: quiet hours until after the visit ({channel})"
                )
                break
            row.fallback_due_at = allowed
            _end(row, WATCHING, f"{why}; quiet hours: {channel} at {quiet.local(allowed)}", now)
            result.deferred += 1
            return
        created = create_outbound_message(
            session,
            OutboundRequest(
                channel=channel,
                to_address=to_address,
                contact_id=appt.contact_id,
                template=row.template,
                template_data=template_data(appt, contact, settings, phase),
                purpose="reminder",
                idempotency_key=f"fallback:{row.id}:v{row.appointment_version}:{channel}",
                metadata={
                    "scheduled_message_id": row.id,
                    "appointment_id": str(appt.id),
                    "appointment_version": row.appointment_version,
                    "kind": row.kind,
                    "phase": phase,
                    "fallback_of": str(current.id),
                    "fallback_reason": why,
                },
                opted_out=False,  # read just above, in this transaction
            ),
        )
        more = position < len(remaining) - 1  # the fallback is watched in turn
        row.fallback_message_id = created.message_id
        row.fallback_due_at = None
        _end(row, WATCHING if more else "sent", "; ".join([*notes, f"{why}: {channel}"]), now)
        if created.should_enqueue:
            result.to_enqueue.append((created.message_id, channel))
        result.created += 1
        return
    _end(row, "skipped", "; ".join([why, *notes]) if notes else f"{why}; chain exhausted", now)
    result.ended += 1


def failover_batch(
    session: Session, settings: Settings, now: datetime, batch_size: int
) -> FailoverResult:
    """Claim and decide up to `batch_size` watched rows in the caller's transaction."""
    result = FailoverResult()
    pairs = session.execute(watched_rows_query(now, deadline_of(settings), batch_size)).all()
    result.examined = len(pairs)
    if not pairs:
        return result
    appts = {
        a.id: a
        for a in session.scalars(
            select(Appointment).where(Appointment.id.in_({r.appointment_id for r, _ in pairs}))
        )
    }
    contact_ids = list({a.contact_id for a in appts.values()})
    contacts = {
        c.id: c for c in session.scalars(select(Contact).where(Contact.id.in_(contact_ids)))
    }
    addresses = contact_addresses(session, contact_ids)
    quiet = QuietHours.from_settings(settings)
    for row, current in pairs:
        appt = appts.get(row.appointment_id)
        _decide(
            session,
            settings,
            row,
            current,
            appt,
            contacts.get(appt.contact_id) if appt else None,
            addresses.get(appt.contact_id, {}) if appt else {},
            quiet,
            now,
            result,
        )
    session.flush()
    return result


def run_failover(settings: Settings, now: datetime | None = None) -> FailoverResult:
    """Drain the watched rows that need a decision; enqueue after each commit."""
    total = FailoverResult()
    while True:
        at = now or datetime.now(UTC)
        with session_scope() as session:
            batch = failover_batch(session, settings, at, settings.SCHEDULER_BATCH_SIZE)
        for message_id, channel in batch.to_enqueue:
            enqueue_send(message_id, channel)
        total.examined += batch.examined
        total.created += batch.created
        total.deferred += batch.deferred
        total.ended += batch.ended
        total.to_enqueue += batch.to_enqueue
        # Deferred rows stay watching with a later fallback_due_at, so a
        # full batch means more rows remain, not the same ones again.
        if batch.examined < settings.SCHEDULER_BATCH_SIZE:
            break
    if total.examined:
        log.info(
            "failover run",
            extra={
                "examined": total.examined,
                "fallbacks_created": total.created,
                "deferred": total.deferred,
                "ended": total.ended,
            },
        )
    return total


# --- on-call alerts ---------------------------------------------------------------------

ALERT_WINDOW = timedelta(days=1)  # an older alert is not news to the on-call


def alert_failover_query(now: datetime, deadline: timedelta, batch_size: int) -> Select[Message]:
    """Alerts with a chain whose next channel may be due and was not made."""
    fallback = aliased(Message)
    next_channel = Message.metadata_["failover_channels"].op("->>")(0)
    key = func.concat("fallback:", cast(Message.id, String), ":", next_channel)
    sent_at = func.coalesce(Message.sent_at, Message.updated_at)
    return (
        select(Message)
        # The literal predicate matches the partial index ix_messages_failover_chain.
        .where(text("messages.metadata ? 'failover_channels'"))
        .where(Message.created_at > now - ALERT_WINDOW)
        .where(
            or_(
                and_(
                    Message.status == MessageStatus.FAILED.value, Message.error_code.is_not(None)
                ),
                and_(Message.status == MessageStatus.SENT.value, sent_at <= now - deadline),
            )
        )
        .where(~exists().where(fallback.idempotency_key == key))
        .order_by(Message.created_at)
        .limit(batch_size)
    )


def _oncall_address(channel: str, settings: Settings) -> str | None:
    if channel == "whatsapp":
        return settings.ONCALL_PHONE or None
    if channel == "email":
        return settings.ONCALL_EMAIL or None
    return None


def run_alert_failover(settings: Settings, now: datetime | None = None) -> FailoverResult:
    """The next channel of on-call alerts that failed or were not delivered."""
    result = FailoverResult()
    if not settings.ONCALL_ALERT_FALLBACK:
        # No chain configured: alerts carry none (one made under an older
        # setting waits for it to come back, within the day's window).
        return result
    now = now or datetime.now(UTC)
    with session_scope() as session:
        alerts = list(
            session.scalars(
                alert_failover_query(now, deadline_of(settings), settings.SCHEDULER_BATCH_SIZE)
            )
        )
        result.examined = len(alerts)
        for alert in alerts:
            meta = alert.metadata_ or {}
            chain = [str(c) for c in meta.get("failover_channels") or []]
            if alert.status == MessageStatus.FAILED.value:
                code = alert.error_code or ""
                if code not in failover_codes(alert.provider):
                    continue  # another channel is not the cure
                why = f"{alert.channel} failed permanently ({code})"
            else:
                why = (
                    f"no delivery on {alert.channel} within "
                    f"{settings.FAILOVER_DELIVERY_DEADLINE_MINUTES:g} min of sending"
                )
            channel, rest = chain[0], chain[1:]
            to_address = _oncall_address(channel, settings)
            if to_address is None:
                continue  # start-up refuses a chain without its address
            created = create_outbound_message(
                session,
                OutboundRequest(
                    channel=channel,
                    to_address=to_address,
                    conversation_id=alert.conversation_id,
                    subject_contact_id=alert.subject_contact_id,
                    template=alert.template,
                    template_data=alert.template_data,
                    purpose=alert.purpose,
                    # Unique: however many schedulers see this alert, one fallback.
                    idempotency_key=f"fallback:{alert.id}:{channel}",
                    metadata={
                        "automation": meta.get("automation"),
                        "fallback_of": str(alert.id),
                        "fallback_reason": why,
                        **({"failover_channels": rest} if rest else {}),
                    },
                    respect_opt_out=False,
                ),
            )
            if created.created:
                result.created += 1
            if created.should_enqueue:
                result.to_enqueue.append((created.message_id, channel))
    for message_id, channel in result.to_enqueue:
        enqueue_send(message_id, channel)
    if result.created:
        log.info("alert failover run", extra={"fallbacks_created": result.created})
    return result
