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


# --- the REST API's requests (ingest/messages_api.py) -------------------------


class RecipientError(ValueError):
    """The `to` of an API request cannot be resolved; `field` names it."""

    def __init__(self, message: str, field: str = "to"):
        super().__init__(message)
        self.field = field


@dataclass
class ApiMessage:
    to: str  # contact id, phone or email
    channel: str | None = None
    text: str | None = None
    subject: str | None = None
    template: str | None = None
    data: dict[str, Any] | None = None
    idempotency_key: str | None = None
    purpose: str = "patient"


def _contact_address(session: Session, contact_id: uuid.UUID, kind: str) -> str | None:
    from shared.models import ContactIdentity

    return session.scalar(
        select(ContactIdentity.value)
        .where(ContactIdentity.contact_id == contact_id, ContactIdentity.kind == kind)
        .order_by(ContactIdentity.id.desc())
        .limit(1)
    )


def resolve_api_message(session: Session, msg: ApiMessage) -> OutboundRequest:
    """Recipient, channel and rendered content of an API request.

    Raises RecipientError or shared.templating.TemplateError (both → 400).
    """
    from shared.contacts import ContactDetails, find_or_create_contact
    from shared.enums import IdentityKind
    from shared.identity import InvalidIdentifier, normalize_email, normalize_phone
    from shared.models import Contact, ContactIdentity
    from shared.templating import render

    contact_id: uuid.UUID | None = None
    address: str | None = None
    channel = msg.channel
    try:
        contact_id = uuid.UUID(msg.to)
    except ValueError:
        pass
    if contact_id is not None:
        contact = session.get(Contact, contact_id)
        if contact is None or contact.erased_at is not None:
            raise RecipientError("no contact with this id")
        if contact.merged_into_id is not None:
            contact_id = contact.merged_into_id
            contact = session.get(Contact, contact_id)
            assert contact is not None
        if channel is None:
            # The contact's preferred channel, else the one they last used.
            for candidate in (contact.preferred_channel, contact.last_channel):
                if candidate in SEND_TASKS:
                    channel = candidate
                    break
        if channel is None:
            channel = "email" if _contact_address(session, contact_id, "email") and not (
                _contact_address(session, contact_id, "phone")
            ) else "sms"
        kind = IdentityKind.EMAIL.value if channel == "email" else IdentityKind.PHONE.value
        address = _contact_address(session, contact_id, kind)
        if address is None:
            raise RecipientError(f"contact has no {kind} for channel {channel}")
    else:
        try:
            if "@" in msg.to:
                address, kind = normalize_email(msg.to), IdentityKind.EMAIL.value
                channel = channel or "email"
            else:
                address, kind = normalize_phone(msg.to), IdentityKind.PHONE.value
                channel = channel or "sms"
        except InvalidIdentifier as exc:
            raise RecipientError(f"not a contact id, phone or email: {exc}") from None
        if (channel == "email") != (kind == IdentityKind.EMAIL.value):
            raise RecipientError(f"channel {channel} cannot send to this address")
        # Usually a known patient: one indexed lookup. A new number or address
        # (or a merged contact) takes the race-free find-or-create path.
        contact_id = session.scalar(
            select(ContactIdentity.contact_id)
            .join(Contact, Contact.id == ContactIdentity.contact_id)
            .where(
                ContactIdentity.kind == kind,
                ContactIdentity.value == address,
                Contact.merged_into_id.is_(None),
            )
        )
        if contact_id is None:
            contact_id = find_or_create_contact(
                session,
                ContactDetails(identities=[(kind, address)], source="api", channel=channel),
            ).contact_id
    if channel not in SEND_TASKS:
        raise RecipientError(f"unknown channel {channel!r}", "channel")

    text, subject = msg.text, msg.subject
    if msg.template:
        rendered = render(channel, msg.template, msg.data or {})
        text, subject = rendered.text, subject or rendered.subject
    if channel == "email" and not subject:
        raise RecipientError("an email needs a subject (or a template)", "subject")

    conversation_id = None
    if contact_id is not None:
        from shared.models import Conversation

        conversation_id = session.scalar(
            select(Conversation.id).where(
                Conversation.contact_id == contact_id, Conversation.status == "active"
            )
        )
    return OutboundRequest(
        channel=channel,
        to_address=address,
        contact_id=contact_id,
        conversation_id=conversation_id,
        text=text,
        subject=subject,
        template=msg.template,
        template_data=msg.data if msg.template else None,
        purpose=msg.purpose,
        # Namespaced: API callers' keys cannot collide with internal producers'.
        idempotency_key=f"api:{msg.idempotency_key}" if msg.idempotency_key else None,
    )
