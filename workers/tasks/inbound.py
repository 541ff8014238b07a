"""The `inbound` queue: file patient messages (thin; logic in shared/)."""

from __future__ import annotations

import logging
from typing import Any

from shared.core.db import session_scope
from shared.core.taskqueue import INBOUND_PROCESS, INBOUND_REACT
from shared.inbound.filing import DuplicateDelivery, file_inbound_message
from shared.inbound.reactions import react_to_inbound
from workers.app import app
from workers.durable import inbound_task_options

log = logging.getLogger(__name__)


# Outages are retried without a budget, other failures end in dead_letters
# (workers/durable.py): an accepted message is never acked away.
@app.task(name=INBOUND_PROCESS, **inbound_task_options())
def process(message_id: str, payload: dict[str, Any]) -> None:
    try:
        with session_scope() as session:
            filed = file_inbound_message(session, message_id, payload)
    except DuplicateDelivery:
        filed = None
    if filed is None:
        log.info("duplicate inbound delivery ignored", extra={"message_id": message_id})
        return
    log.info(
        "inbound message filed",
        extra={"message_id": message_id, "channel": payload.get("channel")},
    )
    # If this publish is lost (Redis blip, worker killed right here), the
    # message stays with reacted_at NULL and shared/inbound/react_redrive.py re-drives it.
    react.apply_async(args=[message_id], argsrepr=f"['{message_id}']")


@app.task(name=INBOUND_REACT, **inbound_task_options())
def react(message_id: str) -> None:
    """Replies that act, triage, automations, inbox bridge (shared/inbound/reactions.py)."""
    react_to_inbound(message_id)
