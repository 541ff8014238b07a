"""Creating outbound messages: the row exists before any send (STYLE 6).

This is the one entry point every producer uses — the REST API (its requests
resolved by shared/outbound/api_messages.py), the scheduler's reminders,
automations, agent replies from the inbox bridge:

    with session_scope() as s:
        mid = create_outbound_message(s, OutboundRequest(...))
    enqueue_send(mid, channel)          # only after the commit

A recipient who opted out of the channel (or of all) gets a row in `skipped`
with the reason, and nothing is enqueued. The INSERT statements (a row and
its event in one statement) are in shared/outbound/_sql.py.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from shared.contacts.optouts import is_opted_out
from shared.core.channels import send_tasks
from shared.core.enums import OPT_OUT_ALL, Direction, MessageStatus
from shared.core.models import Message, OptOut
from shared.outbound import _sql

# channel -> its Celery send task (shared/core/channels.py).
SEND_TASKS = send_tasks()


@dataclass
class OutboundRequest:
    channel: str  # email | sms | whatsapp
    to_address: str  # E.164 phone or email, already normalized
    contact_id: uuid.UUID | None = None
    conversation_id: uuid.UUID | None = None
    # The patient a message to staff is about (team alerts): erasure finds it.
    subject_contact_id: uuid.UUID | None = None
    text: str | None = None
    subject: str | None = None
    template: str | None = None
    template_data: dict[str, Any] | None = None
    purpose: str = "patient"  # patient | auto_reply | alert | reminder | agent_reply…
    idempotency_key: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    # Team alerts (to staff addresses) are not subject to patient opt-outs.
    respect_opt_out: bool = True
    # Whether contact_id has an active opt-out for this channel (or `all`),
    # when the caller already read it in this transaction; None = look it up.
    opted_out: bool | None = None


@dataclass
class OutboundCreated:
    message_id: uuid.UUID
    status: str
    created: bool  # False: the idempotency key named an existing message
    reason: str | None = None

    @property
    def should_enqueue(self) -> bool:
        return self.created and self.status == MessageStatus.QUEUED.value


def _message_row(req: OutboundRequest, status: str, reason: str | None, now: datetime) -> dict:
    return {
        "id": uuid.uuid4(),
        "conversation_id": req.conversation_id,
        "contact_id": req.contact_id,
        "subject_contact_id": req.subject_contact_id,
        "channel": req.channel,
        "direction": Direction.OUTBOUND.value,
        "purpose": req.purpose,
        "to_address": req.to_address,
        "text": req.text,
        "subject": req.subject,
        "template": req.template,
        "template_data": req.template_data,
        # The worker re-checks opt-outs right before sending; team alerts
        # (respect_opt_out=False) must not be skipped there either.
        "metadata": (
            {**req.metadata, "respect_opt_out": False}
            if not req.respect_opt_out
            else (req.metadata or None)
        ),
        "status": status,
        "status_reason": reason,
        "idempotency_key": req.idempotency_key,
        "created_at": now,
        "updated_at": now,
    }


def _status_for(req: OutboundRequest, opted_out: bool) -> tuple[str, str | None]:
    if req.respect_opt_out and req.contact_id is not None and opted_out:
        return MessageStatus.SKIPPED.value, f"recipient opted out of {req.channel}"
    return MessageStatus.QUEUED.value, None


def create_outbound_message(session: Session, req: OutboundRequest) -> OutboundCreated:
    # Two statements at most for a new message: the opt-out check (skipped if
    # the caller already made it, `req.opted_out`) and one INSERT carrying its
    # event. An existing idempotency key costs one more read.
    opted_out = req.opted_out
    if opted_out is None:
        opted_out = bool(
            req.respect_opt_out
            and req.contact_id is not None
            and is_opted_out(session, req.contact_id, req.channel)
        )
    status, reason = _status_for(req, opted_out)
    row = _message_row(req, status, reason, datetime.now(UTC))
    if not _sql.insert_with_events(session, [row]):
        # The idempotency key names an existing message (maybe a concurrent
        # producer's, committed just before ours).
        existing = session.execute(
            select(Message.id, Message.status).where(Message.idempotency_key == req.idempotency_key)
        ).one()
        return OutboundCreated(existing.id, existing.status, created=False)
    return OutboundCreated(row["id"], status, created=True, reason=reason)


def create_outbound_messages_bulk(
    session: Session, requests: list[OutboundRequest]
) -> list[OutboundCreated]:
    """`create_outbound_message` for many requests in three statements: the
    opt-outs of all their contacts, one multi-row INSERT ... ON CONFLICT DO
    NOTHING with the events in the same statement, and (only if some
    idempotency keys already existed) one read of those. Results are in the
    order of `requests`; a key repeated within the batch yields one message."""
    if not requests:
        return []
    contact_ids = {
        r.contact_id
        for r in requests
        if r.respect_opt_out and r.contact_id is not None and r.opted_out is None
    }
    active: set[tuple[uuid.UUID, str]] = set()
    if contact_ids:
        active = {
            (row.contact_id, row.channel)
            for row in session.execute(
                select(OptOut.contact_id, OptOut.channel).where(
                    OptOut.contact_id.in_(contact_ids), OptOut.revoked_at.is_(None)
                )
            )
        }
    now = datetime.now(UTC)
    rows, statuses = [], []
    for req in requests:
        opted_out = req.opted_out
        if opted_out is None:
            opted_out = (req.contact_id, req.channel) in active or (
                req.contact_id,
                OPT_OUT_ALL,
            ) in active
        status, reason = _status_for(req, opted_out)
        rows.append(_message_row(req, status, reason, now))
        statuses.append((status, reason))
    inserted = _sql.insert_with_events(session, rows)
    missing_keys = {row["idempotency_key"] for row in rows if row["id"] not in inserted}
    existing: dict[str, tuple[uuid.UUID, str]] = {}
    if missing_keys:
        existing = {
            r.idempotency_key: (r.id, r.status)
            for r in session.execute(
                select(Message.idempotency_key, Message.id, Message.status).where(
                    Message.idempotency_key.in_(missing_keys)
                )
            )
        }
    results = []
    for row, (status, reason) in zip(rows, statuses, strict=True):
        if row["id"] in inserted:
            results.append(OutboundCreated(row["id"], status, created=True, reason=reason))
        else:
            mid, current = existing[row["idempotency_key"]]
            results.append(OutboundCreated(mid, current, created=False))
    return results


def enqueue_send(message_id: uuid.UUID | str, channel: str) -> None:
    """Publish the send task's first run. Call only after the creating
    transaction committed. Its come-backs (rate-limit slot, backoff) go
    ahead of first runs: shared/core/taskqueue.py FIRST_RUN_PRIORITY."""
    from shared.core.taskqueue import FIRST_RUN_PRIORITY, send_task

    send_task(SEND_TASKS[channel], [str(message_id)], argsrepr=f"['{message_id}']",
              priority=FIRST_RUN_PRIORITY)
