"""Creating outbound messages: the row exists before any send (STYLE 6).

This is the one entry point every producer uses — the REST API, the
scheduler's reminders, automations, agent replies from the inbox bridge:

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
from shared.core.channels import address_kind, is_channel, send_tasks
from shared.core.enums import OPT_OUT_ALL, Direction, MessageStatus
from shared.core.errors import FieldError
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
    """Publish the send task. Call only after the creating transaction committed."""
    from shared.core.taskqueue import send_task

    send_task(SEND_TASKS[channel], [str(message_id)], argsrepr=f"['{message_id}']")


# --- the REST API's requests (ingest/api/messages.py) -------------------------


class RecipientError(FieldError):
    """The `to` of an API request cannot be resolved; `field` names it."""

    def __init__(self, message: str, field: str = "to") -> None:
        super().__init__(message, field)


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


def resolve_api_message(
    session: Session, msg: ApiMessage, create_contact: bool = True
) -> OutboundRequest | None:
    """Recipient, channel and rendered content of an API request.

    Raises RecipientError or shared.core.templating.TemplateError (both → 400).
    Only reads, except for a phone or email no contact has yet: that contact
    is created (find-or-create, which needs a transaction), or with
    `create_contact=False` None is returned and nothing is written.
    """
    from shared.contacts.directory import ContactDetails, contact_address, find_or_create_contact
    from shared.core.enums import IdentityKind
    from shared.core.identity import InvalidIdentifier, normalize_email, normalize_phone
    from shared.core.models import Contact
    from shared.core.templating import render

    contact_id: uuid.UUID | None = None
    address: str | None = None
    channel = msg.channel
    known = False  # conversation_id and opted_out already read
    conversation_id: uuid.UUID | None = None
    opted_out: bool | None = None
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
            channel = (
                "email"
                if contact_address(session, contact_id, "email")
                and not (contact_address(session, contact_id, "phone"))
                else "sms"
            )
        if not is_channel(channel):
            raise RecipientError(f"unknown channel {channel!r}", "channel")
        kind = address_kind(channel)
        address = contact_address(session, contact_id, kind)
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
        if not is_channel(channel):
            raise RecipientError(f"unknown channel {channel!r}", "channel")
        if address_kind(channel) != kind:
            raise RecipientError(f"channel {channel} cannot send to this address")
        # Usually a known patient: one indexed lookup. A new number or address
        # (or a merged contact) takes the race-free find-or-create path.
        # The same statement reads the active conversation and the opt-out.
        found = (
            _sql.core_connection(session)
            .execute(_sql.known_recipient_statement(kind, channel), {"p_address": address})
            .first()
        )
        if found is not None:
            contact_id, conversation_id, opted_out = found[0], found[1], bool(found[2])
            known = True
        elif not create_contact:
            return None
        else:
            contact_id = find_or_create_contact(
                session,
                # An API-key caller named this address: verified by it.
                ContactDetails(
                    identities=[(kind, address)], source="api", channel=channel
                ).vouched_by("api"),
            ).contact_id

    text, subject = msg.text, msg.subject
    if msg.template:
        rendered = render(channel, msg.template, msg.data or {})
        text, subject = rendered.text, subject or rendered.subject
    if channel == "email" and not subject:
        raise RecipientError("an email needs a subject (or a template)", "subject")

    if not known and contact_id is not None:
        extra = session.execute(
            select(_sql.active_conversation(contact_id), _sql.opted_out(contact_id, channel))
        ).one()
        conversation_id, opted_out = extra[0], bool(extra[1])
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
        opted_out=opted_out,
    )
