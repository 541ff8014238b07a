"""What happens after an inbound message is filed (its own task, so filing
stays fast and a failing reaction never loses the message).

Each handler takes (session, ReactionContext) and is idempotent. They run in
order, in one transaction; a handler that consumes the message (a reply
command such as an opt-out keyword) sets `ctx.consumed`, which later handlers
check before acting on it again. Sends are queued in `ctx.after_commit`, run
only once the transaction is durable. The task that calls this is
`clinicq.inbound.react` (workers/tasks/inbound.py); messages whose reaction
was lost are found by shared/inbound/react_redrive.py.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session


@dataclass
class ReactionContext:
    message_id: uuid.UUID
    consumed: bool = False
    notes: dict[str, Any] = field(default_factory=dict)
    after_commit: list[Callable[[], None]] = field(default_factory=list)


Handler = Callable[[Session, ReactionContext], None]

# "module:function" of each handler, in order. Owners add their own line:
#   replies that act (confirm / reschedule / opt-out)    — shared/inbound/replies.py
#   triage, automations, agent alerts, inbox bridge       — shared/inbound/automations.py
HANDLER_PATHS: list[str] = [
    # First: a command (confirm / reschedule / opt-out) consumes the message.
    "shared.inbound.replies:handle_reply",
    # A stated channel preference ("prefiro SMS") is recorded and confirmed.
    "shared.inbound.channel_preference:handle_channel_preference",
    "shared.inbound.automations:run_automations",
]


def handlers() -> list[Handler]:
    import importlib

    loaded = []
    for path in HANDLER_PATHS:
        module, _, name = path.partition(":")
        loaded.append(getattr(importlib.import_module(module), name))
    return loaded


def react_to_inbound(message_id: str) -> ReactionContext:
    """Run every handler in one transaction, then the after-commit actions
    (enqueueing sends) once the transaction is durable."""
    from sqlalchemy import func, update

    from shared.core.db import session_scope
    from shared.core.models import Message

    ctx = ReactionContext(message_id=uuid.UUID(message_id))
    with session_scope() as session:
        for handler in handlers():
            handler(session, ctx)
        # Committed with the handlers' work: a message without it never got
        # its reaction, and shared/inbound/react_redrive.py runs it again.
        session.execute(
            update(Message)
            .where(Message.id == ctx.message_id, Message.reacted_at.is_(None))
            .values(reacted_at=func.now())
        )
    for action in ctx.after_commit:
        action()
    return ctx
