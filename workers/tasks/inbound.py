"""The `inbound` queue: file patient messages (thin; logic in shared/)."""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy.exc import OperationalError

from shared.db import session_scope
from shared.inbound import DuplicateDelivery, file_inbound_message
from shared.reactions import react_to_inbound
from workers.app import app

log = logging.getLogger(__name__)


@app.task(
    name="clinicq.inbound.process",
    autoretry_for=(OperationalError,),
    retry_backoff=2,
    retry_backoff_max=60,
    retry_jitter=True,
    max_retries=20,
)
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
    react.apply_async(args=[message_id], argsrepr=f"['{message_id}']")


@app.task(
    name="clinicq.inbound.react",
    autoretry_for=(OperationalError,),
    retry_backoff=2,
    retry_backoff_max=60,
    retry_jitter=True,
    max_retries=20,
)
def react(message_id: str) -> None:
    """Replies that act, triage, automations, inbox bridge (shared/reactions.py)."""
    react_to_inbound(message_id)
