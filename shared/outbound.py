"""Creating outbound messages: the row exists before any send (STYLE 6).

This is the one entry point every producer uses — the REST API, the
scheduler's reminders, automations, agent replies from the inbox bridge:

    with session_scope() as s:
        mid = create_outbound_message(s, OutboundRequest(...))
    enqueue_send(mid, channel)          # only after the commit

A recipient who opted out of the channel (or of all) gets a row in `skipped`
with the reason, and nothing is enqueued.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from shared.enums import Direction, MessageStatus
from shared.models import Message, MessageEvent
from shared.optouts import is_opted_out

SEND_TASKS = {
    "email": "clinicq.send.email",
    "sms": "clinicq.send.sms",
    "whatsapp": "clinicq.send.whatsapp",
}


@dataclass
class OutboundRequest:
    channel: str  # email | sms | whatsapp
    to_address: str  # E.164 phone or email, already normalized
    contact_id: uuid.UUID | None = None
    conversation_id: uuid.UUID | None = None
    text: str | None = None
    subject: str | None = None
    template: str | None = None
    template_data: dict[str, Any] | None = None
    purpose: str = "patient"  # patient | auto_reply | alert | reminder | agent_reply…
    idempotency_key: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    # Team alerts (to staff addresses) are not subject to patient opt-outs.
    respect_opt_out: bool = True


@dataclass
class OutboundCreated:
    message_id: uuid.UUID
    status: str
    created: bool  # False: the idempotency key named an existing message
    reason: str | None = None

    @property
    def should_enqueue(self) -> bool:
        return self.created and self.status == MessageStatus.QUEUED.value


def create_outbound_message(session: Session, req: OutboundRequest) -> OutboundCreated:
    if req.idempotency_key:
        existing = session.execute(
            select(Message.id, Message.status).where(Message.idempotency_key == req.idempotency_key)
        ).first()
        if existing is not None:
            return OutboundCreated(existing.id, existing.status, created=False)

    status, reason = MessageStatus.QUEUED.value, None
    if (
        req.respect_opt_out
        and req.contact_id is not None
        and is_opted_out(session, req.contact_id, req.channel)
    ):
        status, reason = MessageStatus.SKIPPED.value, f"recipient opted out of {req.channel}"

    now = datetime.now(UTC)
    message_id = uuid.uuid4()
    inserted = session.scalar(
        insert(Message)
        .values(
            id=message_id,
            conversation_id=req.conversation_id,
            contact_id=req.contact_id,
            channel=req.channel,
            direction=Direction.OUTBOUND.value,
            purpose=req.purpose,
            to_address=req.to_address,
            text=req.text,
            subject=req.subject,
            template=req.template,
            template_data=req.template_data,
            # The worker re-checks opt-outs right before sending; team alerts
            # (respect_opt_out=False) must not be skipped there either.
            metadata_=(
                {**req.metadata, "respect_opt_out": False}
                if not req.respect_opt_out
                else (req.metadata or None)
            ),
            status=status,
            status_reason=reason,
            idempotency_key=req.idempotency_key,
            created_at=now,
            updated_at=now,
        )
        .on_conflict_do_nothing(index_elements=["idempotency_key"])
        .returning(Message.id)
    )
    if inserted is None:  # a concurrent producer used the same key first
        row = session.execute(
            select(Message.id, Message.status).where(Message.idempotency_key == req.idempotency_key)
        ).one()
        return OutboundCreated(row.id, row.status, created=False)
    session.add(
        MessageEvent(message_id=message_id, event="created", status_to=status, detail=reason)
    )
    return OutboundCreated(message_id, status, created=True, reason=reason)


def enqueue_send(message_id: uuid.UUID | str, channel: str) -> None:
    """Publish the send task. Call only after the creating transaction committed."""
    from workers.app import app

    app.send_task(
        SEND_TASKS[channel], args=[str(message_id)], argsrepr=f"['{message_id}']"
    )
