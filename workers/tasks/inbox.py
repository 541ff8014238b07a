"""The `inbox` queue: the agent-inbox bridge (thin; the flows are in
shared/inbox/sync.py). An unreachable inbox raises InboxUnavailable and the
task retries with exponential backoff (capped below the visibility timeout);
the data waits in PostgreSQL meanwhile, so nothing is lost."""

from __future__ import annotations

import logging
from typing import Any

from shared.core.config import get_settings
from shared.core.taskqueue import (
    INBOX_EVENT,
    INBOX_LABELS,
    INBOX_NOTE,
    INBOX_POST_MESSAGE,
    INBOX_WIDGET_REPLY,
)
from shared.inbox.base import InboxRejected, InboxUnavailable
from shared.inbox.sync import (
    handle_inbox_event,
    post_patient_message,
    post_private_note,
    sync_labels,
)
from shared.inbox.webchat import post_widget_reply
from workers.app import app
from workers.durable import DurableTask

log = logging.getLogger(__name__)

_RETRY: dict[str, Any] = {
    "base": DurableTask,
    "transient_errors": (InboxUnavailable,),
    "backoff_max": get_settings().MAX_RETRY_BACKOFF_SECONDS,
    # ~1 day of an unreachable inbox at the default 600 s cap, then the task
    # is kept in dead_letters (`clinicq dead-letters replay` once it is back).
    "transient_max_retries": 150,
}


@app.task(name=INBOX_POST_MESSAGE, **_RETRY)
def post_message(message_id: str) -> str:
    try:
        return post_patient_message(message_id)
    except InboxRejected as exc:  # retrying the same request would not help
        log.error("inbox refused a patient message",
                  extra={"message_id": message_id, "error": str(exc), "status": exc.status})
        return "rejected"


@app.task(name=INBOX_LABELS, **_RETRY)
def labels(conversation_id: str) -> str:
    return sync_labels(conversation_id)


@app.task(name=INBOX_EVENT, **_RETRY)
def event(doc: dict[str, Any]) -> str:
    return handle_inbox_event(doc)


@app.task(name=INBOX_NOTE, **_RETRY)
def note(provider: str, remote_conversation: str, text: str) -> str:
    try:
        return post_private_note(provider, remote_conversation, text)
    except InboxRejected as exc:
        log.error("inbox refused a note", extra={"inbox": provider, "error": str(exc)})
        return "rejected"


@app.task(name=INBOX_WIDGET_REPLY, **_RETRY)
def widget_reply(message_id: str) -> str:
    """clinicq's own answer (a safety reply) into a website-widget conversation."""
    try:
        return post_widget_reply(message_id)
    except InboxRejected as exc:
        log.error("inbox refused a widget reply",
                  extra={"message_id": message_id, "error": str(exc), "status": exc.status})
        return "rejected"
