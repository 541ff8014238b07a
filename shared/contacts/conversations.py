"""One active conversation per contact (partial unique index), race-free."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session
from sqlalchemy.sql import text

from shared.core.enums import ConversationStatus
from shared.core.models import Conversation
from shared.core.webhook_events import contact_key, record_event


def active_conversation(
    session: Session, contact_id: uuid.UUID, channel: str, at: datetime, inbound: bool = True
) -> uuid.UUID:
    """The contact's active conversation, opened if there is none."""
    session.execute(
        insert(Conversation)
        .values(
            id=uuid.uuid4(),
            contact_id=contact_id,
            channel=channel,
            status=ConversationStatus.ACTIVE.value,
        )
        .on_conflict_do_nothing(
            index_elements=["contact_id"], index_where=text("status = 'active'")
        )
    )
    conversation_id = session.scalar(
        select(Conversation.id).where(
            Conversation.contact_id == contact_id,
            Conversation.status == ConversationStatus.ACTIVE.value,
        )
    )
    assert conversation_id is not None  # the insert above guarantees one
    values: dict[str, object] = {"channel": channel, "last_message_at": at}
    if inbound:
        values["last_inbound_at"] = at
    session.execute(update(Conversation).where(Conversation.id == conversation_id).values(**values))
    return conversation_id


# A conversation's last inbound message's triage, kept on the conversation
# (the console lists and filters conversations by it, through an index, at
# the cost of what a page shows): recomputed from the messages, never set
# from a value, so it is always what that message says — NULL while the
# last inbound message is not triaged yet (or was erased).
_SET_LAST_INBOUND_TRIAGE = """
UPDATE conversations cv
   SET (last_inbound_intent, last_inbound_urgency) = (
       SELECT m.triage->>'intent', m.triage->>'urgency' FROM messages m
        WHERE m.conversation_id = cv.id AND m.direction = 'inbound'
        ORDER BY m.created_at DESC LIMIT 1)
"""
_REFRESH_LAST_INBOUND_TRIAGE = text(_SET_LAST_INBOUND_TRIAGE + " WHERE cv.id = ANY(:ids)")


def refresh_last_inbound_triage(session: Session, conversation_ids: list[uuid.UUID]) -> None:
    """Recompute `last_inbound_intent` / `last_inbound_urgency` of these
    conversations: after an inbound message is filed, triaged or erased.

    The rows are locked first, in a statement of their own: under READ
    COMMITTED the UPDATE then reads the messages with a snapshot taken after
    any concurrent filing into the same conversation committed (an UPDATE
    that waited for the lock would re-check the row but not re-read the
    messages, and could keep the triage of a message that is no longer the
    last)."""
    ids = sorted(set(conversation_ids))
    if not ids:
        return
    session.execute(
        text("SELECT 1 FROM conversations WHERE id = ANY(:ids) ORDER BY id FOR UPDATE"),
        {"ids": ids},
    )
    session.execute(_REFRESH_LAST_INBOUND_TRIAGE, {"ids": ids})


def refresh_all_last_inbound_triage(conn: Any) -> None:
    """Every conversation at once (the migration's backfill, seeded histories)."""
    conn.execute(text(_SET_LAST_INBOUND_TRIAGE))


def is_widget_conversation(
    session: Session, conversation_id: uuid.UUID, provider: str, remote_conversation: str
) -> bool:
    """Whether this inbox conversation is a website-widget one (channel
    `webchat`, shared/inbox/webchat.py) rather than one the inbox bridge
    opened for the patient: a visitor's message in it was filed here."""
    from shared.core.enums import Channel, Direction
    from shared.core.models import Message

    return (
        session.scalar(
            select(Message.id)
            .where(
                Message.conversation_id == conversation_id,
                Message.channel == Channel.WEBCHAT.value,
                Message.direction == Direction.INBOUND.value,
                Message.provider == provider,
                Message.metadata_["inbox_conversation_id"].astext == remote_conversation,
            )
            .limit(1)
        )
        is not None
    )


def inbox_conversation(
    session: Session, provider: str, remote_conversation: str
) -> Conversation | None:
    """Our conversation linked to this inbox conversation (the newest)."""
    return session.scalar(
        select(Conversation)
        .where(
            Conversation.inbox_provider == provider,
            Conversation.inbox_conversation_id == remote_conversation,
        )
        .order_by(Conversation.created_at.desc())
        .limit(1)
    )


def flag_needs_agent(session: Session, conversation: Conversation, reason: str) -> bool:
    """Mark the conversation as waiting for a human; the first time (it was
    not already waiting) the booking system is told (`conversation.needs_agent`,
    in this transaction). Returns True if it was newly flagged."""
    if conversation.needs_agent:
        return False
    conversation.needs_agent = True
    record_event(
        session,
        "conversation.needs_agent",
        {
            "conversation": {"id": str(conversation.id), "channel": conversation.channel},
            "contact": {"id": str(conversation.contact_id)},
            "reason": reason,
        },
        ordering_key=contact_key(conversation.contact_id),
    )
    return True
