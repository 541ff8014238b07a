"""Celery settings (ARCHITECTURE rule 3). Read by workers/app.py.

- acks_late + reject_on_worker_lost: a task whose worker dies is redelivered;
  every task is idempotent (takes ids, claims rows) so running twice is safe.
- JSON only; results ignored (PostgreSQL holds outcomes, rule 2).
- visibility_timeout above every countdown we use (config checks it), so a
  countdown task is not redelivered while it still waits.
- prefetch multiplier from settings: measured in bench/ (sends are paced by
  the rate limiter). The inbound-only worker is the exception: prefetch 1 and
  a visibility timeout of minutes (inbound_transport_options below).
- retries: workers/durable.py (outages without a budget, dead letters).
"""

from kombu import Queue

from shared.core.channels import DEFAULT_QUEUE, QUEUES
from shared.core.channels import task_routes as channel_task_routes
from shared.core.config import get_settings

_settings = get_settings()

broker_url = _settings.REDIS_URL
broker_connection_retry_on_startup = True
broker_transport_options = {
    "visibility_timeout": _settings.CELERY_VISIBILITY_TIMEOUT,
    "socket_timeout": 5,
    "socket_connect_timeout": 5,
    "health_check_interval": 30,
    # Sweep for tasks abandoned by a dead worker every few seconds, and scan on
    # every sweep (kombu's default scans every 10th, i.e. every ~100 s).
    "unacked_restore_interval": min(10, max(1, _settings.CELERY_VISIBILITY_TIMEOUT // 4)),
    "unacked_restore_throttle": 1,
}
# The `inbound` worker (a worker started with `-Q inbound` only) holds
# patients' messages, urgent ones included: workers/app.py gives it these
# options instead, so a killed inbound worker's tasks come back within
# INBOUND_VISIBILITY_TIMEOUT (3 min) rather than the hour the other queues
# need for their longer countdowns. Its unacked entries live under their own
# keys: kombu's sweep restores every entry of its keys older than ITS
# timeout, so sharing the default keys would hand the other queues'
# countdown tasks (up to MAX_RETRY_BACKOFF_SECONDS) out a second time.
inbound_transport_options = {
    **broker_transport_options,
    "visibility_timeout": _settings.INBOUND_VISIBILITY_TIMEOUT,
    "unacked_key": "unacked_inbound",
    "unacked_index_key": "unacked_index_inbound",
    "unacked_mutex_key": "unacked_mutex_inbound",
    "unacked_restore_interval": min(10, max(1, _settings.INBOUND_VISIBILITY_TIMEOUT // 4)),
}
# Prefetch 1: a killed inbound worker strands at most one task per process,
# and a long task cannot keep an urgent message waiting behind it.
inbound_prefetch_multiplier = 1
task_serializer = "json"
accept_content = ["json"]
result_backend = None
task_ignore_result = True
task_acks_late = True
task_reject_on_worker_lost = True
task_acks_on_failure_or_timeout = True
worker_prefetch_multiplier = _settings.CELERY_PREFETCH_MULTIPLIER
worker_hijack_root_logger = False
worker_send_task_events = True
task_send_sent_event = False
task_default_queue = DEFAULT_QUEUE
# Every queue (shared/core/channels.py), each bound under its own routing key.
# A bare Queue(name) is bound to the default exchange under the default key
# ("maintenance"), so all the queues would share one binding: anything
# published through exchange routing with that key would be copied into every
# queue.
task_queues = [Queue(name, routing_key=name) for name in QUEUES]
# Each send task to its channel's queue; inbound, inbox and maintenance tasks
# by name pattern.
task_routes = channel_task_routes()
# A send that hangs is a bug: hard-kill after 5 minutes, soft signal first.
task_time_limit = 300
task_soft_time_limit = 240
timezone = "UTC"
enable_utc = True
