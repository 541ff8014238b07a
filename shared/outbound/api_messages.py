"""The REST API's message requests (ingest/api/messages.py) → an
`OutboundRequest` for shared/outbound/create.py.

Resolution, in order: who the recipient is (a contact id, or a phone or
e-mail that may name a new contact), which channel and address, the content
(a template rendered now, so a bad one is a 400 and not a failed send), and
the recipient's active conversation and opt-out.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from shared.contacts.directory import ContactDetails, contact_address, find_or_create_contact
from shared.contacts.preference import channel_for_contact
from shared.core.channels import address_kind, is_channel
from shared.core.enums import IdentityKind
from shared.core.errors import FieldError
from shared.core.identity import (
    InvalidIdentifier,
    normalize_email,
    normalize_phone,
    normalize_telegram_id,
)
from shared.core.models import Contact
from shared.core.templating import render
from shared.outbound import _sql
from shared.outbound.create import OutboundRequest


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


@dataclass
class _Recipient:
    contact_id: uuid.UUID
    channel: str
    address: str
    # Read with the recipient (a known address): no second read needed.
    conversation_id: uuid.UUID | None = None
    opted_out: bool | None = None
    known: bool = False


def resolve_api_message(
    session: Session, msg: ApiMessage, create_contact: bool = True
) -> OutboundRequest | None:
    """Recipient, channel and rendered content of an API request.

    Raises RecipientError or shared.core.templating.TemplateError (both → 400).
    Only reads, except for a phone or email no contact has yet: that contact
    is created (find-or-create, which needs a transaction), or with
    `create_contact=False` None is returned and nothing is written.
    """
    contact_id = _as_contact_id(msg.to)
    if contact_id is not None:
        recipient: _Recipient | None = _by_contact_id(session, contact_id, msg.channel)
    else:
        recipient = _by_address(session, msg.to, msg.channel, create_contact)
    if recipient is None:
        return None
    text, subject = _content(recipient.channel, msg)
    if not recipient.known:
        recipient.conversation_id, recipient.opted_out = _conversation_and_opt_out(
            session, recipient.contact_id, recipient.channel
        )
    return OutboundRequest(
        channel=recipient.channel,
        to_address=recipient.address,
        contact_id=recipient.contact_id,
        conversation_id=recipient.conversation_id,
        text=text,
        subject=subject,
        template=msg.template,
        template_data=msg.data if msg.template else None,
        purpose=msg.purpose,
        # Namespaced: API callers' keys cannot collide with internal producers'.
        idempotency_key=f"api:{msg.idempotency_key}" if msg.idempotency_key else None,
        opted_out=recipient.opted_out,
    )


def _as_contact_id(to: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(to)
    except ValueError:
        return None


def _by_contact_id(session: Session, contact_id: uuid.UUID, channel: str | None) -> _Recipient:
    """A contact named by id (followed to the contact it was merged into),
    on `channel` or the one it prefers, at its address for that channel."""
    contact = session.get(Contact, contact_id)
    if contact is None or contact.erased_at is not None:
        raise RecipientError("no contact with this id")
    if contact.merged_into_id is not None:
        contact_id = contact.merged_into_id
        contact = session.get(Contact, contact_id)
        assert contact is not None
    if channel is None:
        # The contact's preferred channel, else the one they last used (each
        # only where they have an address: shared/contacts/preference.py).
        channel = channel_for_contact(session, contact)
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
    return _Recipient(contact_id, channel, address)


def _by_address(
    session: Session, to: str, channel: str | None, create_contact: bool
) -> _Recipient | None:
    """A phone or e-mail: its contact, or a new one (None with
    `create_contact=False` when no contact has it)."""
    try:
        if channel is not None and is_channel(channel) and (
            address_kind(channel) == IdentityKind.TELEGRAM.value
        ):
            # A Telegram chat id: digits, like a phone, so the channel decides.
            address, kind = normalize_telegram_id(to), IdentityKind.TELEGRAM.value
        elif "@" in to:
            address, kind = normalize_email(to), IdentityKind.EMAIL.value
            channel = channel or "email"
        else:
            address, kind = normalize_phone(to), IdentityKind.PHONE.value
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
        return _Recipient(found[0], channel, address, found[1], bool(found[2]), known=True)
    if not create_contact:
        return None
    contact_id = find_or_create_contact(
        session,
        # An API-key caller named this address: verified by it.
        ContactDetails(identities=[(kind, address)], source="api", channel=channel).vouched_by(
            "api"
        ),
    ).contact_id
    return _Recipient(contact_id, channel, address)


def _content(channel: str, msg: ApiMessage) -> tuple[str | None, str | None]:
    """(text, subject): the template rendered now, else as given."""
    text, subject = msg.text, msg.subject
    if msg.template:
        rendered = render(channel, msg.template, msg.data or {})
        text, subject = rendered.text, subject or rendered.subject
    if channel == "email" and not subject:
        raise RecipientError("an email needs a subject (or a template)", "subject")
    return text, subject


def _conversation_and_opt_out(
    session: Session, contact_id: uuid.UUID, channel: str
) -> tuple[uuid.UUID | None, bool]:
    extra = session.execute(
        select(_sql.active_conversation(contact_id), _sql.opted_out(contact_id, channel))
    ).one()
    return extra[0], bool(extra[1])
