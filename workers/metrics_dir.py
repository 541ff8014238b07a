"""The directory prometheus-client's multiprocess mode writes in, for a
Celery worker: a fresh one per worker (prefork children and their parent
share it), removed when the worker exits, unless the deployment set
PROMETHEUS_MULTIPROC_DIR itself. Only when the worker serves metrics
(WORKER_METRICS_PORT): a process that merely imports the tasks (a test, a
shell) keeps the ordinary in-memory registry. Imported first by
workers/app.py: the variable must be set before prometheus_client is
imported anywhere."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile


def ensure_metrics_dir() -> None:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return
    if os.environ.get("WORKER_METRICS_PORT", "0").strip() in ("", "0"):
        return
    directory = tempfile.mkdtemp(prefix="clinicq-worker-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
    owner = os.getpid()

    def remove() -> None:
        # Pool children run atexit too; only the process that made it removes it.
        if os.getpid() == owner:
            shutil.rmtree(directory, ignore_errors=True)

    atexit.register(remove)
    # Celery's command line may have imported prometheus_client already (Flower
    # registers a command): its value class was then chosen without the
    # variable. Metrics made from now on (shared/core/metrics.py) take the
    # class looked up at creation, so choosing it again is enough.
    import sys

    values = sys.modules.get("prometheus_client.values")
    if values is not None:
        values.ValueClass = values.get_value_class()  # type: ignore[attr-defined]
