"""Publishing what a provider webhook parsed: one task per inbound message or
status event, deduplicated on the provider's own id (providers retry)."""

from __future__ import annotations

import uuid
from typing import Any

from flask import current_app

from shared.core.channels import INBOUND_QUEUE
from shared.core.taskqueue import INBOUND_PROCESS, INBOUND_STATUS_UPDATE, idempotency_redis_key


def publish_inbound_message(payload: dict[str, Any], scope: str, provider_id: str) -> bool:
    """Enqueue `clinicq.inbound.process` once per (scope, provider id).

    Returns False for a duplicate delivery. Raises redis.RedisError when the
    queue is unreachable: the view answers 503 so the provider retries.
    """
    message_id = str(uuid.uuid4())
    payload["message_id"] = message_id
    return _publish_once(
        INBOUND_PROCESS,
        [message_id, payload],
        task_id=message_id,
        dedupe=(scope, provider_id),
        argsrepr=f"['{message_id}', '<{scope} message>']",
    )


def publish_status_update(
    event: dict[str, Any], scope: str, event_key: str, task_id: str | None = None
) -> bool:
    """Enqueue the delivery engine's `clinicq.inbound.status_update` with one
    dict, once per (scope, event key). Providers retry a callback they did not
    get a 2xx for: repeats stop here; the worker's processed_events ledger is
    the real guard."""
    return _publish_once(
        INBOUND_STATUS_UPDATE,
        [event],
        task_id=task_id or str(uuid.uuid4()),
        dedupe=(scope, event_key),
        argsrepr=f"['<{scope} {event.get('status')}>']",
    )


def _publish_once(
    task: str, args: list[Any], task_id: str, dedupe: tuple[str, str], argsrepr: str
) -> bool:
    settings = current_app.config["SETTINGS"]
    _, created = current_app.config["PUBLISHER"]().publish(
        task,
        args,
        queue=INBOUND_QUEUE.name,
        message_id=task_id,
        idempotency_key=idempotency_redis_key(*dedupe),
        idempotency_ttl=settings.IDEMPOTENCY_TTL_SECONDS,
        argsrepr=argsrepr,
    )
    return bool(created)
