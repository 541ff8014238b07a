"""Outbound webhooks: one delivery attempt per task (thin; logic in
shared/outbound/webhook_delivery.py).

The task takes a delivery id only. A retry that is due soon comes back as a
countdown (kept below half the visibility timeout, rule 3); a later one is
left to the scheduler's sweep. Running the task twice is harmless: the claim
takes the delivery once, and a worker killed mid-request leaves a lease that
expires (the event is then delivered again with the same webhook-id).
"""

from __future__ import annotations

from shared.core.config import get_settings
from shared.core.taskqueue import WEBHOOK_DELIVER, send_task
from shared.core.webhook_events import publish_deliveries
from shared.outbound.webhook_delivery import deliver, lease_seconds
from workers.app import app
from workers.durable import DurableTask

_settings = get_settings()


@app.task(
    base=DurableTask,
    name=WEBHOOK_DELIVER,
    ignore_result=True,
    backoff_max=min(60, _settings.CELERY_VISIBILITY_TIMEOUT // 2),
    # The lease covers the request; past it another worker may take the
    # delivery, so this one must be gone by then.
    soft_time_limit=int(lease_seconds(_settings)),
    time_limit=int(lease_seconds(_settings)) + 1,
)
def deliver_webhook(delivery_id: int) -> str:
    settings = get_settings()
    outcome = deliver(int(delivery_id), settings)
    if outcome.publish:
        publish_deliveries(outcome.publish)
    if outcome.retry_in is not None and outcome.retry_in <= settings.CELERY_VISIBILITY_TIMEOUT / 2:
        send_task(WEBHOOK_DELIVER, args=[int(delivery_id)], countdown=outcome.retry_in)
    return outcome.status
