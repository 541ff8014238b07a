"""Outbound webhooks: one delivery attempt per task (thin; logic in
shared/outbound/webhook_delivery.py).

The task takes a delivery id only. A retry that is due soon comes back as a
countdown (kept below half the visibility timeout, rule 3); a later one is
left to the scheduler's sweep. Running the task twice is harmless: the claim
takes the delivery once, and a worker killed mid-request leaves a lease that
expires (the event is then delivered again with the same webhook-id).
"""

from __future__ import annotations

import time

from shared.core.config import get_settings
from shared.core.taskqueue import WEBHOOK_DELIVER, send_task
from shared.core.webhook_events import publish_deliveries
from shared.outbound.webhook_delivery import deliver, lease_seconds
from workers.app import app
from workers.durable import DurableTask

_settings = get_settings()


# Time one task may spend following an ordering chain (below).
_CHAIN_SECONDS = lease_seconds(_settings)


@app.task(
    base=DurableTask,
    name=WEBHOOK_DELIVER,
    ignore_result=True,
    backoff_max=min(60, _settings.CELERY_VISIBILITY_TIMEOUT // 2),
    # A chain runs for at most _CHAIN_SECONDS, then its last delivery's
    # request (one lease at most) must finish: past that the task is killed
    # and the lease lets another worker take the delivery.
    soft_time_limit=int(_CHAIN_SECONDS + lease_seconds(_settings)),
    time_limit=int(_CHAIN_SECONDS + lease_seconds(_settings)) + 2,
)
def deliver_webhook(delivery_id: int) -> str:
    """Deliver; then, while time allows, the next pending event of the same
    ordering key (which waited for this one) in the same task instead of at
    the back of the queue — a receiver catching up on one appointment's
    events gets them back to back."""
    settings = get_settings()
    started = time.monotonic()
    current = int(delivery_id)
    while True:
        outcome = deliver(current, settings)
        if outcome.retry_in is not None and (
            outcome.retry_in <= settings.CELERY_VISIBILITY_TIMEOUT / 2
        ):
            send_task(WEBHOOK_DELIVER, args=[current], countdown=outcome.retry_in)
        if not outcome.publish:
            return outcome.status
        if time.monotonic() - started >= _CHAIN_SECONDS:
            publish_deliveries(outcome.publish)
            return outcome.status
        current, rest = outcome.publish[0], outcome.publish[1:]
        if rest:
            publish_deliveries(rest)
