"""gunicorn settings for the ingest service (also used by bench/ for both the
real and the no-op endpoint, so their ratio compares like with like)."""

import multiprocessing
import os
import tempfile
from pathlib import Path

bind = f"0.0.0.0:{os.environ.get('INGEST_PORT', '8000')}"
# Sync workers: requests are short and CPU-bound (HMAC, validation, one Redis
# round trip); two per core keeps the cores busy while one waits on Redis.
workers = int(os.environ.get("INGEST_WORKERS", multiprocessing.cpu_count() * 2))
worker_class = "sync"
timeout = 30
graceful_timeout = 10
keepalive = 5
# Bound header sizes (request-line and each header).
limit_request_line = 8190
limit_request_field_size = 8190
limit_request_fields = 100
accesslog = None
errorlog = "-"
loglevel = "warning"

# Prometheus multiprocess mode (ingest/metrics.py): every worker writes its
# counters to files here and /metrics sums them. Set before the workers fork
# and import prometheus_client; emptied at start so old runs do not count.
_OWN_METRICS_DIR = "PROMETHEUS_MULTIPROC_DIR" not in os.environ
if _OWN_METRICS_DIR:
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="clinicq-prometheus-")


def on_starting(server):
    directory = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob("*.db"):
        stale.unlink()


def child_exit(server, worker):
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server):
    if _OWN_METRICS_DIR:
        import shutil

        shutil.rmtree(os.environ["PROMETHEUS_MULTIPROC_DIR"], ignore_errors=True)
