"""The retry policy every task shares: nothing is acked away (rule 12).

- PostgreSQL or Redis unreachable (`shared.core.dead_letters.is_infrastructure_error`):
  retried for as long as the outage lasts, backoff doubling up to the
  task's `backoff_max` (below its queue's visibility timeout, rule 3);
- an error the task declares transient (`transient_errors`, e.g. an agent
  inbox that is down): up to `transient_max_retries`, then dead-lettered;
- anything else: up to TASK_FAILURE_RETRIES, then dead-lettered.

Budgets count the task's retries of every kind (Celery keeps one counter):
a task that waited out a long outage and then fails for another reason is
dead-lettered at once — kept and replayable, never dropped.

Dead-lettering writes the task's name and arguments to `dead_letters` and
acks; if PostgreSQL is down at that moment the task is retried instead, so
the arguments are never dropped. Declared next to the task, as dramatiq does:

    @app.task(base=DurableTask, name=..., backoff_max=60)
"""

from __future__ import annotations

import logging
import random
from typing import Any, ClassVar

from celery import Task
from celery.exceptions import Ignore, Reject, Retry

from shared.core.config import get_settings
from shared.core.dead_letters import is_infrastructure_error

log = logging.getLogger(__name__)

# Inbound tasks file or react to one message: milliseconds of work, a few
# seconds with an AI triage call. A hard limit of 60 s bounds how long one
# can hold its message, which INBOUND_VISIBILITY_TIMEOUT must exceed.
INBOUND_TIME_LIMIT_SECONDS = 60


def inbound_task_options() -> dict[str, Any]:
    return {
        "base": DurableTask,
        "backoff_max": get_settings().INBOUND_RETRY_BACKOFF_MAX_SECONDS,
        "time_limit": INBOUND_TIME_LIMIT_SECONDS,
        "soft_time_limit": INBOUND_TIME_LIMIT_SECONDS - 10,
    }


class DurableTask(Task):
    # Outages have no budget; the other budgets are counted in __call__.
    max_retries = None
    backoff_base: float = 2.0
    backoff_max: float = 60.0
    transient_errors: ClassVar[tuple[type[BaseException], ...]] = ()
    transient_max_retries: int = 8

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().__call__(*args, **kwargs)
        except (Retry, Ignore, Reject):
            raise
        except Exception as exc:  # noqa: BLE001 - classified below, never dropped
            return self._failed(exc, args, kwargs)

    def backoff(self, retries: int) -> float:
        """Exponential, capped, with jitter (half fixed, half random) so a
        fleet of tasks blocked by one outage does not return in step."""
        delay = min(float(self.backoff_max), self.backoff_base * (2 ** min(retries, 30)))
        return delay / 2 + random.uniform(0, delay / 2)  # noqa: S311 - jitter, not crypto

    def _failed(self, exc: Exception, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        retries = int(self.request.retries or 0)
        if is_infrastructure_error(exc):
            log.warning(
                "infrastructure unreachable; task retried until it is back",
                extra={"task": self.name, "task_id": self.request.id, "retries": retries,
                       "error": type(exc).__name__},
            )
            raise self._retry(exc, args, retries)
        budget = (
            self.transient_max_retries
            if self.transient_errors and isinstance(exc, self.transient_errors)
            else get_settings().TASK_FAILURE_RETRIES
        )
        if retries < budget:
            log.warning(
                "task failed; retrying",
                extra={"task": self.name, "task_id": self.request.id, "retries": retries,
                       "error": type(exc).__name__},
            )
            raise self._retry(exc, args, retries)
        return self._dead_letter(exc, args, kwargs, retries)

    def _retry(self, exc: Exception, args: tuple[Any, ...], retries: int) -> Exception:
        # The retry's argsrepr/kwargsrepr (what Flower and the worker log
        # show) are redacted to ids by the before_task_publish receiver
        # (shared/core/task_repr.py), like every other publish.
        try:
            return self.retry(exc=exc, countdown=self.backoff(retries))
        except Reject as rejected:
            # Celery could not publish the retry (Redis unreachable) and would
            # reject without requeue — with Redis, an ack: the task gone.
            # Requeue instead; if Redis cannot take that either, the message
            # stays unacknowledged and comes back after the visibility timeout.
            return Reject(rejected.reason, requeue=True)

    def _dead_letter(
        self, exc: Exception, args: tuple[Any, ...], kwargs: dict[str, Any], retries: int
    ) -> None:
        from shared.core import dead_letters
        from shared.core.db import session_scope

        delivery = self.request.delivery_info or {}
        try:
            with session_scope() as session:
                dead_letter_id = dead_letters.record(
                    session,
                    task_name=self.name,
                    task_id=self.request.id,
                    queue=delivery.get("routing_key"),
                    args=args,
                    kwargs=kwargs,
                    exc=exc,
                    attempts=retries + 1,
                )
        except Exception as db_exc:
            if is_infrastructure_error(db_exc):
                # Cannot record it now: keep the task alive instead.
                raise self._retry(db_exc, args, retries) from db_exc
            raise
        # The arguments stay in the table; the log says which row holds them.
        log.error(
            "task gave up; kept in dead_letters for replay",
            extra={"task": self.name, "task_id": self.request.id,
                   "dead_letter_id": dead_letter_id, "error": type(exc).__name__,
                   "attempts": retries + 1},
        )
