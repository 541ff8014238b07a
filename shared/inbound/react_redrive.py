"""Re-drive the reaction of inbound messages whose `react` task was lost.

Filing and reacting are two tasks (shared/inbound/reactions.py): filing commits the
message, then publishes `clinicq.inbound.react`. If that publish fails (a
Redis blip) or the worker dies between the commit and the publish, the
message is safe but nobody triages it, acknowledges it, alerts the on-call
phone or posts it to the agent inbox. The reaction stamps
`messages.reacted_at` in its own transaction, so a filed inbound message
still without it after REACT_REDRIVE_AFTER_SECONDS (counted from its filing,
on the database clock) is published again by this pass, run periodically by
the scheduler. Not re-driven: a reaction that gave up and waits in
dead_letters for an operator, and messages of erased contacts.

Running a reaction twice sends nothing twice: each automation is guarded by
the `automation_runs` unique key and every outbound message it creates has an
idempotency key derived from the inbound message id, so a re-drive of a
reaction that was merely slow (still queued behind a backlog) is harmless.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from sqlalchemy import exists, func, select

from shared.core.config import Settings, get_settings
from shared.core.db import session_scope
from shared.core.enums import Direction
from shared.core.models import Contact, DeadLetter, Message, MessageEvent
from shared.core.taskqueue import INBOUND_REACT, send_task

log = logging.getLogger(__name__)

BATCH_LIMIT = 500


def redrive_unreacted_messages(
    settings: Settings | None = None, after_seconds: float | None = None
) -> list[str]:
    """Publish `react` again for each filed inbound message that never got
    its reaction; returns their ids."""
    settings = settings or get_settings()
    wait = settings.REACT_REDRIVE_AFTER_SECONDS if after_seconds is None else after_seconds
    filed_long_enough_ago = exists().where(
        MessageEvent.message_id == Message.id,
        MessageEvent.event == "received",
        MessageEvent.created_at <= func.now() - timedelta(seconds=wait),
    )
    # A reaction that gave up is in dead_letters, waiting for an operator:
    # re-driving it every pass would only add a failure each time.
    gave_up = exists().where(
        DeadLetter.message_id == Message.id,
        DeadLetter.task_name == INBOUND_REACT,
        DeadLetter.replayed_at.is_(None),
    )
    erased = exists().where(Contact.id == Message.contact_id, Contact.erased_at.is_not(None))
    with session_scope() as session:
        ids = [
            str(mid)
            for mid in session.scalars(
                select(Message.id)
                .where(
                    Message.direction == Direction.INBOUND.value,
                    Message.reacted_at.is_(None),
                    filed_long_enough_ago,
                    ~gave_up,
                    ~erased,
                )
                .order_by(Message.created_at)
                .limit(BATCH_LIMIT)
            )
        ]
    for message_id in ids:
        send_task(INBOUND_REACT, [message_id], argsrepr=f"['{message_id}']")
    if ids:
        log.warning("inbound reactions re-driven (their react task was lost)",
                    extra={"count": len(ids)})
    return ids
