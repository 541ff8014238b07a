"""The Celery application. Start a worker with
`celery -A workers.app worker -Q inbound,email,sms,whatsapp,inbox,maintenance`.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from celery.signals import (
    celeryd_after_setup,
    celeryd_init,
    setup_logging,
    worker_process_init,
    worker_process_shutdown,
)

from shared.core.config import ConfigError, fail_startup, get_settings
from shared.core.logs import configure_logging
from shared.core.taskqueue import celery_app

try:
    get_settings().require_infrastructure()
except ConfigError as exc:  # pragma: no cover - start-up path
    fail_startup(exc)

def _task_modules() -> list[str]:
    """Every module under workers/tasks/ (a new queue's tasks need no edit here)."""
    import pkgutil

    import workers.tasks

    return [f"workers.tasks.{m.name}" for m in pkgutil.iter_modules(workers.tasks.__path__)]


# The one application of the process (shared/core/taskqueue.py: its settings
# and the argument redaction on every publish), with the task modules added.
app = celery_app()
app.conf.include = _task_modules()


def _queue_names(queues: object) -> set[str]:
    if isinstance(queues, str):
        return {q.strip() for q in queues.split(",") if q.strip()}
    if isinstance(queues, list | tuple | set):
        return {name for q in queues for name in _queue_names(q)}
    return set()


@celeryd_init.connect
def _inbound_worker_options(
    conf: object, options: dict[str, object], instance: object, **_: object
) -> None:
    """A worker that consumes only `inbound` gets its short visibility
    timeout, its own unacked keys and prefetch 1 (celeryconfig.py explains
    why). Runs before the worker connects to the broker."""
    import celeryconfig

    queues = _queue_names(options.get("queues"))
    if "inbound" in queues or not queues:
        _build_intent_model()
    if queues == {"inbound"}:
        conf.broker_transport_options = celeryconfig.inbound_transport_options  # type: ignore[attr-defined]
        # The command line already read the prefetch setting: applied to the
        # worker itself once it has read its defaults (below).
        instance._clinicq_prefetch = celeryconfig.inbound_prefetch_multiplier  # type: ignore[attr-defined]
    elif "inbound" in queues or not queues:
        logging.getLogger(__name__).warning(
            "this worker consumes `inbound` with other queues: a killed worker's inbound "
            "tasks come back only after CELERY_VISIBILITY_TIMEOUT; run `-Q inbound` alone"
        )


@celeryd_init.connect
def _serve_metrics(**_: object) -> None:
    """/metrics of this worker, from the parent process: it reads the files
    every pool process writes (multiprocess mode), so one scrape sees the
    whole worker. Started before the pool forks; children keep only the
    listening socket, not the server thread."""
    from shared.core.metrics import serve_metrics

    serve_metrics(get_settings().WORKER_METRICS_PORT, "worker")


@worker_process_shutdown.connect
def _pool_process_gone(pid: int | None = None, **_: object) -> None:
    from prometheus_client import multiprocess

    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.mark_process_dead(pid or os.getpid())


def _build_intent_model() -> None:
    """Triage's intent model (shared/triage/intent_model.py) is trained once
    here, before the pool forks, so every child inherits it instead of
    training its own on its first message (a few seconds of CPU each)."""
    from shared.triage.intent_model import default_model

    default_model()


@celeryd_after_setup.connect
def _inbound_worker_prefetch(instance: Any, **_: object) -> None:
    """Sent once the worker is built and before its consumer connects (the
    broker's prefetch count is set when it does)."""
    prefetch = getattr(instance, "_clinicq_prefetch", None)
    if prefetch is None:
        return
    instance.prefetch_multiplier = prefetch
    consumer = getattr(instance, "consumer", None)
    if consumer is not None:
        consumer.prefetch_multiplier = prefetch
        processes = instance.max_concurrency or instance.concurrency
        consumer.initial_prefetch_count = max(processes, 1) * prefetch


@setup_logging.connect
def _setup_logging(**_: object) -> None:
    configure_logging(get_settings().LOG_LEVEL)


@worker_process_init.connect
def _reset_after_fork(**_: object) -> None:
    # Connections must not be shared across the prefork boundary.
    from shared.core import db

    db.dispose_engines()
    logging.getLogger(__name__).debug("worker process initialised")
