"""`python -m scheduler`: APScheduler (in-memory job store) running

- the tick (every SCHEDULER_TICK_SECONDS): claim due rows → messages → enqueue
  (scheduler/claim.py). Several scheduler processes may run at once: the
  claim is `FOR UPDATE SKIP LOCKED`, so each row goes to exactly one;
- maintenance (every SCHEDULER_MAINTENANCE_SECONDS): the reconciler for
  messages stuck in queued/sending/unknown, re-driving the reaction of
  inbound messages whose `react` task was lost, closing idle conversations, the
  IMAP poll when IMAP_HOST is set, re-alerting unanswered urgent messages.
  Jobs owned by other modules are wired only if their module provides them.

Nothing is stored in the job store: the schedule is code, the work is rows in
PostgreSQL (rule 4), so a restart loses nothing. SIGTERM/SIGINT stop the
scheduler after the running jobs finish (a tick commits or rolls back whole).
"""

from __future__ import annotations

import importlib
import logging
import signal
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.jobstores.memory import MemoryJobStore
from apscheduler.schedulers.blocking import BlockingScheduler

from scheduler.claim import run_tick
from scheduler.maintenance import close_idle_conversations
from shared.core.config import Settings

log = logging.getLogger(__name__)


def _optional(path: str) -> Callable[..., Any] | None:
    """`module:function` if that module exists and defines it (other
    engineers' jobs land independently of this service)."""
    module_name, _, name = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name:
            return None
        raise
    fn = getattr(module, name, None)
    return fn if callable(fn) else None


def _call_with_settings(fn: Callable[..., Any], settings: Settings) -> Callable[[], Any]:
    """`fn(settings=settings)` if it takes a `settings` argument, else `fn()`
    (the reconciler reads the settings itself)."""
    import inspect

    if "settings" in inspect.signature(fn).parameters:
        return lambda: fn(settings=settings)
    return lambda: fn()


def maintenance_jobs(settings: Settings) -> dict[str, Callable[[], Any]]:
    jobs: dict[str, Callable[[], Any]] = {
        "close_idle_conversations": lambda: close_idle_conversations(settings),
    }
    optional = {
        "reconcile_stuck_messages": "shared.outbound.reconciler:reconcile_stuck_messages",
        "redrive_unreacted_messages": "shared.inbound.react_redrive:redrive_unreacted_messages",
        "realert_unanswered_urgent": "shared.inbound.automations:realert_unanswered_urgent",
        "report_failed_agent_replies": "shared.inbox.sync:report_failed_agent_replies",
    }
    if settings.IMAP_HOST:
        optional["poll_mailbox"] = "shared.providers.email.imap:poll_mailbox"
    for name, path in optional.items():
        fn = _optional(path)
        if fn is None:
            log.warning("periodic job not available yet", extra={"job": name, "path": path})
            continue
        jobs[name] = _call_with_settings(fn, settings)
    return jobs


def _logged(name: str, fn: Callable[[], Any]) -> Callable[[], None]:
    def run() -> None:
        try:
            fn()
        except Exception:  # noqa: BLE001 - one failing run must not stop the schedule
            log.exception("periodic job failed", extra={"job": name})

    run.__name__ = name
    return run


def build_scheduler(settings: Settings) -> BlockingScheduler:
    scheduler = BlockingScheduler(
        jobstores={"default": MemoryJobStore()},
        executors={"default": ThreadPoolExecutor(max_workers=4)},
        job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
        timezone=UTC,
    )
    now = datetime.now(UTC)
    scheduler.add_job(
        _logged("tick", lambda: run_tick(settings)),
        "interval",
        seconds=settings.SCHEDULER_TICK_SECONDS,
        id="tick",
        next_run_time=now,
    )
    for name, fn in maintenance_jobs(settings).items():
        scheduler.add_job(
            _logged(name, fn),
            "interval",
            seconds=settings.SCHEDULER_MAINTENANCE_SECONDS,
            id=name,
            next_run_time=now,
        )
    return scheduler


def run(settings: Settings) -> None:
    scheduler = build_scheduler(settings)

    def stop(signum: int, _frame: Any) -> None:
        log.info("scheduler stopping", extra={"signal": signal.Signals(signum).name})
        # wait=True: the running tick finishes its transaction and enqueues.
        scheduler.shutdown(wait=True)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    log.info(
        "scheduler started",
        extra={"jobs": [job.id for job in scheduler.get_jobs()]},
    )
    scheduler.start()
    log.info("scheduler stopped")
