"""The send queues (`email`, `sms`, `whatsapp`, `telegram`, `messenger`,
`instagram`): send one message (thin; the state machine is
shared/outbound/delivery.py). A wait — rate-limit slot, backoff, Retry-After —
comes back as a countdown and the task re-queues itself; it never sleeps while
holding a worker process."""

from __future__ import annotations

from typing import Any

from celery import Task

from shared.core.config import get_settings
from shared.core.taskqueue import (
    SEND_EMAIL,
    SEND_INSTAGRAM,
    SEND_MESSENGER,
    SEND_SMS,
    SEND_TELEGRAM,
    SEND_WHATSAPP,
)
from shared.outbound.delivery import deliver, note_pending
from workers.app import app
from workers.durable import DurableTask

_TIME_LIMIT = get_settings().SEND_TASK_TIME_LIMIT_SECONDS

_OPTIONS: dict[str, Any] = {
    # The reconciler judges a `sending` row abandoned only after this limit
    # (RECONCILE_STUCK_AFTER_SECONDS exceeds it, checked in shared.core.config).
    "time_limit": _TIME_LIMIT,
    "soft_time_limit": _TIME_LIMIT * 0.8,
    "bind": True,
    # Provider retries are bounded by SEND_MAX_ATTEMPTS on the row; the task's
    # own retries cover an unreachable database or broker (no budget) and
    # anything else (a few times, then dead_letters), see workers/durable.py.
    "base": DurableTask,
    "backoff_max": min(30, get_settings().MAX_RETRY_BACKOFF_SECONDS),
}


def _run(task: Task, channel: str, message_id: str, **kwargs: Any) -> str:
    outcome = deliver(message_id, channel, **kwargs)
    if outcome.retry_in is not None:
        # A new task message with a countdown, then this one is acked: lighter
        # than raising Retry (no exception, no retry bookkeeping) for what is
        # the normal path of every rate-limited send. A crash between the two
        # leaves two tasks for one message, which the claim makes harmless.
        task.apply_async(
            args=[message_id],
            kwargs=outcome.retry_kwargs,
            countdown=outcome.retry_in,
            argsrepr=f"['{message_id}']",
        )
        note_pending(message_id, outcome.retry_in)
        return f"requeued ({outcome.status})"
    return outcome.status


@app.task(name=SEND_EMAIL, **_OPTIONS)
def send_email(self: Task, message_id: str, **kwargs: Any) -> str:
    return _run(self, "email", message_id, **kwargs)


@app.task(name=SEND_SMS, **_OPTIONS)
def send_sms(self: Task, message_id: str, **kwargs: Any) -> str:
    return _run(self, "sms", message_id, **kwargs)


@app.task(name=SEND_WHATSAPP, **_OPTIONS)
def send_whatsapp(self: Task, message_id: str, **kwargs: Any) -> str:
    return _run(self, "whatsapp", message_id, **kwargs)


@app.task(name=SEND_MESSENGER, **_OPTIONS)
def send_messenger(self: Task, message_id: str, **kwargs: Any) -> str:
    return _run(self, "messenger", message_id, **kwargs)


@app.task(name=SEND_INSTAGRAM, **_OPTIONS)
def send_instagram(self: Task, message_id: str, **kwargs: Any) -> str:
    return _run(self, "instagram", message_id, **kwargs)


@app.task(name=SEND_TELEGRAM, **_OPTIONS)
def send_telegram(self: Task, message_id: str, **kwargs: Any) -> str:
    return _run(self, "telegram", message_id, **kwargs)
