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
    settings = current_app.config["SETTINGS"]
    message_id = str(uuid.uuid4())
    payload["message_id"] = message_id
    _, created = current_app.config["PUBLISHER"]().publish(
        INBOUND_PROCESS,
        [message_id, payload],
        queue=INBOUND_QUEUE.name,
        message_id=message_id,
        idempotency_key=idempotency_redis_key(scope, provider_id),
        idempotency_ttl=settings.IDEMPOTENCY_TTL_SECONDS,
        argsrepr=f"['{message_id}', '<{scope} message>']",
    )
    return created


def publish_status_update(event: dict[str, Any], scope: str, event_key: str) -> bool:
    """Enqueue the delivery engine's `clinicq.inbound.status_update` with one
    dict, once per (scope, event key)."""
    settings = current_app.config["SETTINGS"]
    task_id = str(uuid.uuid4())
    _, created = current_app.config["PUBLISHER"]().publish(
        INBOUND_STATUS_UPDATE,
        [event],
        queue=INBOUND_QUEUE.name,
        message_id=task_id,
        idempotency_key=idempotency_redis_key(scope, event_key),
        idempotency_ttl=settings.IDEMPOTENCY_TTL_SECONDS,
        argsrepr=f"['<{scope} {event.get('status')}>']",
    )
    return created
