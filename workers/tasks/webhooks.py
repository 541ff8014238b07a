"""Outbound webhooks: delivery attempts, one task for a batch of deliveries
(thin; logic in shared/outbound/webhook_delivery.py).

The task takes delivery ids only: one id, or a list (what one transaction
recorded, a chunk of the sweep's backlog — shared/core/webhook_events.py
`publish_deliveries`). Each delivery is still claimed, attempted and
recorded on its own, with its own lease, so one failing or slow endpoint in
a batch costs the others time but never their delivery, and the per-key
order holds: a delivery whose earlier event of the same key is pending is
not claimed, and is delivered right after that one (below).

A retry that is due soon comes back as a countdown (kept below half the
visibility timeout, rule 3); a later one is left to the scheduler's sweep.
Running the task twice is harmless: the claim takes a delivery once, and a
worker killed mid-request leaves a lease that expires (the event is then
delivered again with the same webhook-id).
"""

from __future__ import annotations

import time
from collections import Counter, deque

from shared.core.config import get_settings
from shared.core.taskqueue import WEBHOOK_DELIVER, send_task
from shared.core.webhook_events import publish_deliveries
from shared.outbound.webhook_delivery import deliver, lease_seconds
from workers.app import app
from workers.durable import DurableTask

_settings = get_settings()


# Time one task may spend on its batch and the ordering chains it follows
# (below); what is left then is published again.
_CHAIN_SECONDS = lease_seconds(_settings)


@app.task(
    base=DurableTask,
    name=WEBHOOK_DELIVER,
    ignore_result=True,
    backoff_max=min(60, _settings.CELERY_VISIBILITY_TIMEOUT // 2),
    # A batch runs for at most _CHAIN_SECONDS, then its last delivery's
    # request (one lease at most) must finish: past that the task is killed
    # and the lease lets another worker take the delivery.
    soft_time_limit=int(_CHAIN_SECONDS + lease_seconds(_settings)),
    time_limit=int(_CHAIN_SECONDS + lease_seconds(_settings)) + 2,
)
def deliver_webhook(delivery_ids: int | list[int]) -> str:
    """Deliver each id in turn; after a delivery, the next pending event of
    the same ordering key (which waited for it) goes first, in the same task
    instead of at the back of the queue — a receiver catching up on one
    appointment's events gets them back to back."""
    settings = get_settings()
    started = time.monotonic()
    ids = [delivery_ids] if isinstance(delivery_ids, int) else list(delivery_ids)
    todo = deque(int(i) for i in ids)
    outcomes: Counter[str] = Counter()
    while todo:
        current = todo.popleft()
        outcome = deliver(current, settings)
        outcomes[outcome.status] += 1
        if outcome.retry_in is not None and (
            outcome.retry_in <= settings.CELERY_VISIBILITY_TIMEOUT / 2
        ):
            send_task(WEBHOOK_DELIVER, args=[current], countdown=outcome.retry_in)
        todo.extendleft(reversed(outcome.publish))
        if todo and time.monotonic() - started >= _CHAIN_SECONDS:
            publish_deliveries(list(todo))
            break
    return " ".join(f"{status}={n}" for status, n in sorted(outcomes.items()))
