"""Outbound webhook events: what clinicq tells the booking system, written to
an outbox in the transaction of the change that caused it.

`record_event(session, type, data, ordering_key=...)` inserts the event and
one delivery row per enabled endpoint subscribed to its type, in the caller's
session: the change and its event commit together or not at all (a rollback
leaves no event, a commit always leaves one). Once that transaction commits,
the new delivery ids are published to the `webhooks` queue at once (the fast
path, see `_publish_after_commit`); the scheduler's sweep enqueues whatever a
lost publish left behind (shared/outbound/webhook_delivery.py).

The catalogue (`EVENT_TYPES`) is the contract: each type has a `version`
that changes only when its `data` changes incompatibly. Payloads carry ids
(clinicq's and the booking system's external ids) and channels — never
message text, names, phones or e-mails (README, "Outbound webhooks").
"""

from __future__ import annotations

import logging
import secrets
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import event, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from shared.core.config import get_settings
from shared.core.models import Appointment, WebhookEvent

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EventType:
    version: int
    description: str
    # High-volume types an endpoint gets only when it lists them by name
    # (a `*` subscription leaves them out).
    explicit_only: bool = False


EVENT_TYPES: dict[str, EventType] = {
    "appointment.confirmed": EventType(1, "the patient confirmed the appointment"),
    "appointment.reschedule_requested": EventType(1, "the patient asked to reschedule"),
    "appointment.cancel_requested": EventType(1, "the patient asked to cancel"),
    "appointment.cancelled": EventType(
        1, "clinicq cancelled the appointment (never echoed for a cancellation you sent)"
    ),
    "contact.opted_out": EventType(1, "the patient stopped messages on a channel (or all)"),
    "contact.opted_in": EventType(1, "an opt-out was withdrawn"),
    "message.failed": EventType(1, "an outbound message failed for good"),
    "message.delivered": EventType(1, "an outbound message was delivered", explicit_only=True),
    "conversation.needs_agent": EventType(1, "a conversation now waits for a human"),
    "waitlist.slot_claimed": EventType(1, "a waiting patient claimed a freed slot"),
}
ALL_TYPES = "*"

# session.info key: delivery ids recorded in the session's open transaction.
_PENDING_PUBLISH = "clinicq_webhook_deliveries"


def new_event_id() -> str:
    """`evt_` + 12 hex digits of milliseconds + 20 random hex digits: sorts by
    time, unique without coordination; the receiver's dedupe key."""
    return f"evt_{int(time.time() * 1000):012x}{secrets.token_hex(10)}"


def subscribed(event_type: str, endpoint_types: list[str]) -> bool:
    if event_type in endpoint_types:
        return True
    return ALL_TYPES in endpoint_types and not EVENT_TYPES[event_type].explicit_only


def record_event(
    session: Session,
    event_type: str,
    data: dict[str, Any],
    *,
    ordering_key: str | None = None,
    idempotency_key: str | None = None,
) -> None:
    """Write the event and its deliveries in the caller's transaction.

    `ordering_key` (e.g. `appointment:<id>`): to each endpoint, an event is
    not delivered while an earlier event of the same key is still pending.
    `idempotency_key`: a caller that may run twice (a redelivered task)
    records one event per key."""
    kind = EVENT_TYPES.get(event_type)
    if kind is None:
        raise ValueError(f"unknown webhook event type {event_type!r}")
    event_id = new_event_id()
    now = datetime.now(UTC)
    payload = {
        "id": event_id,
        "type": event_type,
        "version": kind.version,
        "occurred_at": now.isoformat(),
        "data": data,
    }
    statement = insert(WebhookEvent).values(
        id=event_id,
        type=event_type,
        version=kind.version,
        payload=payload,
        ordering_key=ordering_key,
        idempotency_key=idempotency_key,
        created_at=now,
    )
    if idempotency_key is not None:
        statement = statement.on_conflict_do_nothing(index_elements=["idempotency_key"])
    seq = session.scalar(statement.returning(WebhookEvent.seq))
    if seq is None:
        return  # recorded by an earlier run of the same work
    max_age = get_settings().WEBHOOK_DELIVERY_MAX_AGE_SECONDS
    delivery_ids = session.scalars(
        text(
            """
            INSERT INTO webhook_deliveries
                (event_id, endpoint_id, event_seq, ordering_key, next_attempt_at, retry_until)
            SELECT :event_id, e.id, :seq, :ordering_key, :now,
                   :now + make_interval(secs => :max_age)
            FROM webhook_endpoints e
            WHERE e.enabled
              AND (:event_type = ANY(e.event_types)
                   OR (:all_types = ANY(e.event_types) AND NOT :explicit_only))
            RETURNING id
            """
        ),
        {
            "event_id": event_id,
            "seq": seq,
            "ordering_key": ordering_key,
            "now": now,
            "max_age": max_age,
            "event_type": event_type,
            "all_types": ALL_TYPES,
            "explicit_only": kind.explicit_only,
        },
    ).all()
    publish_after_commit(session, list(delivery_ids))


def publish_after_commit(session: Session, delivery_ids: list[int]) -> None:
    """Publish these deliveries once the session's transaction commits."""
    if delivery_ids:
        session.info.setdefault(_PENDING_PUBLISH, []).extend(delivery_ids)


@event.listens_for(Session, "after_commit")
def _publish_after_commit(session: Session) -> None:
    """The fast path: the deliveries a transaction recorded are published the
    moment it commits. A failure here loses nothing (the rows are committed
    and the sweep enqueues them), so it is logged, never raised into the
    caller, whose change has already committed.

    SQLAlchemy fires this event when a SAVEPOINT is released too (the
    automations run in one): only the outermost commit makes rows visible.
    Ids recorded in a savepoint that was rolled back stay in the list; their
    tasks find no row and do nothing."""
    if session.in_nested_transaction():
        return
    delivery_ids = session.info.pop(_PENDING_PUBLISH, None)
    if delivery_ids:
        publish_deliveries(delivery_ids)


@event.listens_for(Session, "after_rollback")
def _forget_after_rollback(session: Session) -> None:
    session.info.pop(_PENDING_PUBLISH, None)


# Delivery ids per published task: one task delivers them in turn, sparing a
# task's overhead per delivery (a transaction's deliveries, a sweep's
# backlog); several tasks still share a backlog among the workers.
PUBLISH_BATCH = 25


def publish_deliveries(delivery_ids: list[int]) -> None:
    from shared.core.taskqueue import WEBHOOK_DELIVER, send_task

    try:
        for start in range(0, len(delivery_ids), PUBLISH_BATCH):
            batch = [int(i) for i in delivery_ids[start:start + PUBLISH_BATCH]]
            send_task(WEBHOOK_DELIVER, args=[batch])
    except Exception as exc:  # noqa: BLE001 - the sweep is the safety net
        log.warning(
            "webhook deliveries not published; the sweep will enqueue them",
            extra={"count": len(delivery_ids), "error": type(exc).__name__},
        )


# --- the data of each type (ids and channels only) ------------------------------------


def appointment_data(appt: Appointment, **extra: Any) -> dict[str, Any]:
    """`data` of the appointment.* events: the booking system's external id
    is how it finds its own record; `version` orders its changes."""
    return {
        "appointment": {
            "id": str(appt.id),
            "external_id": appt.external_id,
            "status": appt.status,
            "version": appt.version,
            "starts_at": appt.starts_at.isoformat() if appt.starts_at else None,
        },
        "contact": {"id": str(appt.contact_id)},
        **extra,
    }


def appointment_key(appointment_id: uuid.UUID | str) -> str:
    return f"appointment:{appointment_id}"


def contact_key(contact_id: uuid.UUID | str) -> str:
    return f"contact:{contact_id}"


def event_payload(session: Session, event_id: str) -> dict[str, Any] | None:
    return session.scalar(select(WebhookEvent.payload).where(WebhookEvent.id == event_id))


def record_message_event(session: Session, message_id: uuid.UUID, event_type: str) -> None:
    """`message.failed` / `message.delivered` for a patient's message (one
    per message and type, whichever path reports it first). Messages to the
    team (no contact) are not the booking system's business."""
    from shared.core.models import Message

    row = session.execute(
        select(
            Message.contact_id,
            Message.channel,
            Message.status,
            Message.purpose,
            Message.error_code,
            Message.metadata_,
        ).where(Message.id == message_id)
    ).first()
    if row is None or row.contact_id is None:
        return
    metadata = row.metadata_ or {}
    appointment_id = metadata.get("appointment_id") if isinstance(metadata, dict) else None
    record_event(
        session,
        event_type,
        {
            "message": {
                "id": str(message_id),
                "channel": row.channel,
                "status": row.status,
                "purpose": row.purpose,
                "error_code": row.error_code,
                "appointment_id": appointment_id if isinstance(appointment_id, str) else None,
            },
            "contact": {"id": str(row.contact_id)},
        },
        ordering_key=appointment_key(appointment_id) if isinstance(appointment_id, str) else None,
        idempotency_key=f"message:{message_id}:{event_type}",
    )
