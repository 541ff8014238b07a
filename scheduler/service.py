"""`python -m scheduler`: APScheduler (in-memory job store) running

- the tick (every SCHEDULER_TICK_SECONDS): claim due rows → messages → enqueue
  (scheduler/claim.py). Several scheduler processes may run at once: the
  claim is `FOR UPDATE SKIP LOCKED`, so each row goes to exactly one;
- right after each tick, failover: the next channel of a chain for
  messages that failed permanently or were not delivered in time
  (scheduler/failover.py), exactly once per row and channel;
- maintenance (every SCHEDULER_MAINTENANCE_SECONDS): the reconciler for
  messages stuck in queued/sending/unknown, re-driving the reaction of
  inbound messages whose `react` task was lost, closing idle conversations, the
  IMAP poll when IMAP_HOST is set (published to a maintenance worker),
  re-alerting unanswered urgent messages, telling agents which of their
  replies failed, offering freed slots to the waitlist (and expiring offers:
  shared/inbound/waitlist_offers.py);
- the webhook sweep (every WEBHOOK_SWEEP_SECONDS): outbound webhook
  deliveries due and untaken are enqueued, expired ones failed.

Nothing is stored in the job store: the schedule is code, the work is rows in
PostgreSQL (rule 4), so a restart loses nothing. SIGTERM/SIGINT stop the
scheduler after the running jobs finish (a tick commits or rolls back whole).
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.jobstores.memory import MemoryJobStore
from apscheduler.schedulers.blocking import BlockingScheduler

from scheduler.claim import run_tick
from scheduler.failover import run_alert_failover, run_failover
from scheduler.maintenance import close_idle_conversations
from shared.core import metrics
from shared.core.config import Settings
from shared.core.taskqueue import MAINTENANCE_POLL_IMAP, send_task
from shared.inbound.automations import realert_unanswered_urgent
from shared.inbound.react_redrive import redrive_unreacted_messages
from shared.inbound.waitlist_offers import offer_freed_slots
from shared.inbox.sync import report_failed_agent_replies
from shared.outbound.reconciler import reconcile_stuck_messages
from shared.outbound.webhook_delivery import sweep as sweep_webhook_deliveries
from shared.runtime.metrics_collector import BacklogCollector

log = logging.getLogger(__name__)


def maintenance_jobs(settings: Settings) -> dict[str, Callable[[], Any]]:
    """The periodic jobs besides the tick, by name (the name is the job id
    and what the logs call it)."""
    jobs: dict[str, Callable[[], Any]] = {
        "close_idle_conversations": lambda: close_idle_conversations(settings),
        "reconcile_stuck_messages": lambda: reconcile_stuck_messages(),
        "redrive_unreacted_messages": lambda: redrive_unreacted_messages(settings=settings),
        "realert_unanswered_urgent": lambda: realert_unanswered_urgent(settings=settings),
        "report_failed_agent_replies": lambda: report_failed_agent_replies(settings=settings),
        "offer_waitlist_slots": lambda: offer_freed_slots(settings),
    }
    if settings.IMAP_HOST:
        # The poll is network I/O against the clinic's mailbox: it runs in a
        # maintenance worker (workers/tasks/imap.py, which classifies its
        # failures), the scheduler only asks for it. Overlapping polls are
        # harmless: the mailbox row is locked by the one that runs.
        jobs["poll_mailbox"] = lambda: send_task(MAINTENANCE_POLL_IMAP)
    return jobs


def tick_and_failover(settings: Settings) -> None:
    """The tick, then the failover decisions: a permanent failure reaches the
    next channel of its chain within a tick (one job, not two at the same
    pace: the job is the unit SIGTERM waits for)."""
    run_tick(settings)
    run_failover(settings)
    run_alert_failover(settings)


def _logged(name: str, fn: Callable[[], Any]) -> Callable[[], None]:
    def run() -> None:
        try:
            fn()
        except Exception:  # noqa: BLE001 - one failing run must not stop the schedule
            log.exception("periodic job failed", extra={"job": name})
            metrics.JOB_RUNS.labels(name, "error").inc()
        else:
            metrics.JOB_RUNS.labels(name, "ok").inc()

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
        _logged("tick", lambda: tick_and_failover(settings)),
        "interval",
        seconds=settings.SCHEDULER_TICK_SECONDS,
        id="tick",
        next_run_time=now,
    )
    # Outbound webhooks' safety net, on its own (shorter) interval: deliveries
    # whose publish was lost, retries, dead workers' leases.
    scheduler.add_job(
        _logged("sweep_webhook_deliveries", lambda: sweep_webhook_deliveries(settings)),
        "interval",
        seconds=settings.WEBHOOK_SWEEP_SECONDS,
        id="sweep_webhook_deliveries",
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
    # /metrics: the tick's and jobs' counters, and the backlog gauges (queue
    # depth and age, dead letters, stuck messages) computed at each scrape.
    metrics.serve_metrics(settings.SCHEDULER_METRICS_PORT, "scheduler", BacklogCollector())

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
