"""The Celery application. Start a worker with
`celery -A workers.app worker -Q inbound,email,sms,whatsapp,inbox,maintenance`.
"""

from __future__ import annotations

import logging

from celery import Celery
from celery.signals import before_task_publish, setup_logging, worker_process_init

from shared.config import ConfigError, fail_startup, get_settings
from shared.logging import configure_logging
from shared.task_repr import redact_task_headers

try:
    get_settings().require_infrastructure()
except ConfigError as exc:  # pragma: no cover - start-up path
    fail_startup(exc)

def _task_modules() -> list[str]:
    """Every module under workers/tasks/ (a new queue's tasks need no edit here)."""
    import pkgutil

    import workers.tasks

    return [f"workers.tasks.{m.name}" for m in pkgutil.iter_modules(workers.tasks.__path__)]


app = Celery("clinicq", include=_task_modules())
app.config_from_object("celeryconfig")
# Every message Celery publishes — retries included — shows Flower and the
# worker logs ids only, never the patient data in its arguments.
before_task_publish.connect(redact_task_headers, weak=False)


@setup_logging.connect
def _setup_logging(**_: object) -> None:
    configure_logging(get_settings().LOG_LEVEL)


@worker_process_init.connect
def _reset_after_fork(**_: object) -> None:
    # Connections must not be shared across the prefork boundary.
    from shared import db

    db.dispose_engines()
    logging.getLogger(__name__).debug("worker process initialised")
