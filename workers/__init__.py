"""Celery workers: thin tasks that call one function in shared/."""

# The package runs before workers.app and anything it imports: prometheus-client
# chooses its value class (one file per process, summed at scrape) when it is
# first imported, from PROMETHEUS_MULTIPROC_DIR.
from workers.metrics_dir import ensure_metrics_dir

ensure_metrics_dir()
