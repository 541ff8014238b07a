"""gunicorn settings for the console (a few staff at a time: sync workers,
each request a handful of indexed queries)."""

import multiprocessing
import os

bind = f"0.0.0.0:{os.environ.get('CONSOLE_PORT', '8080')}"
workers = int(os.environ.get("CONSOLE_WORKERS", max(2, multiprocessing.cpu_count())))
worker_class = "sync"
timeout = 30
graceful_timeout = 10
keepalive = 5
limit_request_line = 8190
limit_request_field_size = 8190
limit_request_fields = 100
accesslog = None
errorlog = "-"
loglevel = "warning"


def post_worker_init(worker: object) -> None:
    """The app is loaded: keep its import-time objects (modules, templates,
    the settings) out of every later garbage collection — a page allocates
    thousands of objects, and a full collection walking the whole heap
    is what made the slowest responses slow (bench/console.py p95)."""
    import gc

    gc.freeze()
