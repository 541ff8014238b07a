"""Periodic housekeeping run by the scheduler besides the due-rows tick."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, update

from shared.core.config import Settings
from shared.core.db import session_scope
from shared.core.enums import ConversationStatus
from shared.core.models import Conversation

log = logging.getLogger(__name__)


def close_idle_conversations(settings: Settings, now: datetime | None = None) -> int:
    """Close active conversations idle for CONVERSATION_IDLE_HOURS.

    A conversation waiting for an agent (`needs_agent`) stays open: closing it
    would hide a patient nobody answered yet. The next inbound message opens a
    new conversation (one active per contact, partial unique index).
    """
    now = now or datetime.now(UTC)
    cutoff = now - timedelta(hours=settings.CONVERSATION_IDLE_HOURS)
    with session_scope() as session:
        result = session.execute(
            update(Conversation)
            .where(
                Conversation.status == ConversationStatus.ACTIVE.value,
                Conversation.needs_agent.is_(False),
                func.coalesce(Conversation.last_message_at, Conversation.created_at) < cutoff,
            )
            .values(status=ConversationStatus.CLOSED.value, closed_at=now)
        )
        closed = int(getattr(result, "rowcount", 0) or 0)
    if closed:
        log.info("idle conversations closed", extra={"count": closed})
    return closed
