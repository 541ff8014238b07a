"""gunicorn settings for the ingest service (also used by bench/ for both the
real and the no-op endpoint, so their ratio compares like with like)."""

import multiprocessing
import os
import tempfile
from pathlib import Path

bind = f"0.0.0.0:{os.environ.get('INGEST_PORT', '8000')}"
# Sync workers, one per core: a request is short and CPU-bound (HMAC,
# validation, one Redis round trip of ~0.1 ms). Measured with bench/ on 2
# cores, 2 workers served more requests/s than 4 (2x cores, gunicorn's usual
# starting point) for the real endpoint and the no-op alike, and spent less
# CPU per request: the extra processes only add context switches. Raise
# INGEST_WORKERS when Redis is remote and its round trip is long.
workers = int(os.environ.get("INGEST_WORKERS", max(2, multiprocessing.cpu_count())))
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
