"""E-mail threading: which of our outbound e-mails a reply answers, and
whose conversation it is filed in.

A reply's `In-Reply-To`/`References` are matched against the `Message-ID`s
of our outbound emails (the SMTP provider records them as
`provider_message_id`); the match goes in the metadata
(`in_reply_to_message_id`, `thread_conversation_id`). Filing puts the message
in its contact's active conversation: the sender's, or — for an unknown
address answering our email — the patient's we wrote to (`thread_reply`).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from shared.core.enums import Channel, Direction, IdentityKind
from shared.core.models import Contact, ContactIdentity, Message


@dataclass
class Thread:
    """Our outbound email a reply answers."""

    message_id: uuid.UUID
    conversation_id: uuid.UUID | None
    contact_id: uuid.UUID | None


def find_thread(session: Session, metadata: dict[str, Any]) -> Thread | None:
    """The outbound email named by the reply's In-Reply-To/References."""
    refs = list(dict.fromkeys([metadata.get("in_reply_to"), *(metadata.get("references") or [])]))
    refs = [r for r in refs if r]
    if not refs:
        return None
    candidates = refs + [r.strip("<>") for r in refs]
    row = session.execute(
        select(Message.id, Message.conversation_id, Message.contact_id)
        .where(
            Message.channel == Channel.EMAIL.value,
            Message.direction == Direction.OUTBOUND.value,
            or_(
                Message.provider_message_id.in_(candidates),
                Message.metadata_["message_id"].astext.in_(candidates),
            ),
        )
        .order_by(Message.created_at.desc())
        .limit(1)
    ).first()
    return Thread(row.id, row.conversation_id, row.contact_id) if row else None


def _surviving_identity(session: Session, contact_id: uuid.UUID) -> tuple[str, str] | None:
    """An identity of the contact (following merges), email first."""
    for _ in range(10):
        merged_into = session.scalar(select(Contact.merged_into_id).where(Contact.id == contact_id))
        if merged_into is None:
            break
        contact_id = merged_into
    row = session.execute(
        select(ContactIdentity.kind, ContactIdentity.value)
        .where(ContactIdentity.contact_id == contact_id)
        .order_by((ContactIdentity.kind != IdentityKind.EMAIL.value), ContactIdentity.id)
        .limit(1)
    ).first()
    return (row.kind, row.value) if row else None


def thread_reply(session: Session, payload: dict[str, Any]) -> None:
    """Thread a reply onto the conversation of the email it answers.

    A sender we know is filed by their own identity (their active
    conversation). A sender we do not know, answering an email we sent, is
    filed under the patient we sent it to — by that patient's existing
    identity, so the unverified address is NOT attached to the patient (a
    forwarded thread must not redirect the patient's mail); the address stays
    in the metadata for an operator to add or merge.
    """
    metadata = payload["message"]["metadata"]
    thread = find_thread(session, metadata)
    if thread is None:
        return
    metadata["in_reply_to_message_id"] = str(thread.message_id)
    if thread.conversation_id is not None:
        metadata["thread_conversation_id"] = str(thread.conversation_id)
    sender = payload["contact"]["email"]
    known = session.scalar(
        select(ContactIdentity.id).where(
            ContactIdentity.kind == IdentityKind.EMAIL.value, ContactIdentity.value == sender
        )
    )
    if known is not None or thread.contact_id is None:
        return
    identity = _surviving_identity(session, thread.contact_id)
    if identity is None:  # the patient was erased: a stranger, by their own address
        return
    metadata["from_address"] = sender
    metadata["threaded_by"] = "in-reply-to"
    payload["contact"] = {identity[0]: identity[1]}
