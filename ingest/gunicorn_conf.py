"""gunicorn settings for the ingest service (also used by bench/ for both the
real and the no-op endpoint, so their ratio compares like with like)."""

import multiprocessing
import os

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
