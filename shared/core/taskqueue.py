"""Publishing Celery tasks straight to Redis, for the ingest hot path.

Celery's `apply_async` costs more than the rest of a webhook request
(bench/: ~0.34x of a no-op endpoint on 2 cores). Ingest instead writes the
same Celery protocol-v2 envelope that kombu's Redis transport writes (an
LPUSH of a JSON document onto the list named after the queue) — and does it
inside one Lua script that also takes the idempotency key and sets the
"accepted" marker, so dedupe + enqueue + marker are one atomic round trip:
either the task is on the queue and the key is taken, or neither.

The envelope format is checked end to end: real Celery workers consume what
ingest published here (tests/integration/test_inbound_pipeline.py, among
others), so a format Celery cannot read fails the suite.
"""

from __future__ import annotations

import base64
import functools
import os
import socket
import threading
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import orjson
import redis

from shared.core.task_repr import redact_task_headers, redacted_argsrepr, redacted_kwargsrepr

if TYPE_CHECKING:
    from celery import Celery

_ORIGIN = f"ingest@{socket.gethostname()}"
_EMBED = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}

# KEYS: idempotency key, queue list, accepted marker
# ARGV: message id, idempotency ttl, envelope, marker ttl, use-idempotency flag
_PUBLISH_LUA = """
if ARGV[5] == '1' then
  local existing = redis.call('GET', KEYS[1])
  if existing then return existing end
  redis.call('SET', KEYS[1], ARGV[1], 'EX', tonumber(ARGV[2]))
end
redis.call('LPUSH', KEYS[2], ARGV[3])
redis.call('SET', KEYS[3], '1', 'EX', tonumber(ARGV[4]))
return ARGV[1]
"""

ACCEPTED_MARKER_TTL = 7 * 24 * 3600


def accepted_key(message_id: str) -> str:
    return f"clinicq:accepted:{message_id}"


def idempotency_redis_key(scope: str, key: str) -> str:
    return f"clinicq:idem:{scope}:{key}"


def build_envelope(
    task_name: str,
    args: list[Any],
    queue: str,
    task_id: str | None = None,
    argsrepr: str | None = None,
) -> bytes:
    """The JSON document kombu's Redis transport would LPUSH for this task."""
    task_id = task_id or str(uuid.uuid4())
    body = orjson.dumps([args, {}, _EMBED])
    envelope = {
        "body": base64.b64encode(body).decode(),
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": {
            "lang": "py",
            "task": task_name,
            "id": task_id,
            "shadow": None,
            "eta": None,
            "expires": None,
            "group": None,
            "group_index": None,
            "retries": 0,
            "timelimit": [None, None],
            "root_id": task_id,
            "parent_id": None,
            # What Flower and worker logs show instead of the args, which
            # carry patient data: ids only (shared/core/task_repr.py).
            "argsrepr": argsrepr if argsrepr is not None else redacted_argsrepr(args),
            "kwargsrepr": "{}",
            "origin": _ORIGIN,
            "ignore_result": True,
            "replaced_task_nesting": 0,
            "stamped_headers": None,
            "stamps": {},
        },
        "properties": {
            "correlation_id": task_id,
            "reply_to": "",
            "delivery_mode": 2,
            "delivery_info": {"exchange": "", "routing_key": queue},
            "priority": 0,
            "body_encoding": "base64",
            # kombu makes a fresh uuid per publish; the task id is one already
            # (unique per message), and a uuid4 costs more than the rest of
            # this envelope.
            "delivery_tag": task_id,
        },
    }
    return orjson.dumps(envelope)


class TaskPublisher:
    """Atomic dedupe + enqueue on Redis. One instance per process.

    Each thread publishes on a connection of its own, outside redis-py's
    pool: the pool's checkout/checkin with its observability hooks costs
    ~50 µs a command in redis-py 8, a few percent of a webhook request
    (bench/ingest.py). The connection is still redis-py's (same settings,
    same protocol code); only the pooling is skipped.
    """

    def __init__(self, client: redis.Redis, wait_aof_timeout_ms: int | None = None) -> None:
        self._client = client
        # REDIS_DURABILITY=waitaof: after each publish, wait until Redis's AOF
        # fsync covers it (shared/core/redis_durability.py).
        self._wait_aof_timeout_ms = wait_aof_timeout_ms
        self._pool = client.connection_pool
        self._sha = client.register_script(_PUBLISH_LUA).sha
        self._local = threading.local()

    def _connection(self) -> Any:
        local = self._local
        conn = getattr(local, "conn", None)
        if conn is None or local.pid != os.getpid():  # first use, or a forked child
            conn = self._pool.connection_class(**self._pool.connection_kwargs)
            local.conn, local.pid, local.proven = conn, os.getpid(), False
        return conn

    def _execute(self, *args: Any) -> Any:
        conn = self._connection()
        try:
            conn.send_command(*args)
            result = conn.read_response()
        except redis.ConnectionError:
            conn.disconnect()
            if not self._local.proven:
                raise
            # A connection that has worked before may have gone stale (Redis
            # restarted, an idle timeout): the server never read the command,
            # so one retry on a fresh connection cannot enqueue twice. A
            # timeout is not retried: the script may have run.
            self._local.proven = False
            conn.send_command(*args)
            result = conn.read_response()
        except redis.TimeoutError:
            conn.disconnect()
            raise
        self._local.proven = True
        return result

    def publish(
        self,
        task_name: str,
        args: list[Any],
        queue: str,
        message_id: str,
        idempotency_key: str | None,
        idempotency_ttl: int,
        argsrepr: str | None = None,
    ) -> tuple[str, bool]:
        """Enqueue unless the idempotency key was seen.

        Returns (message_id, created): on a duplicate, the first message's id
        and False. Raises redis.RedisError when Redis is unreachable — the
        caller must answer 503, never a 202.
        """
        # The task id is the message id: one task per message, and Flower
        # and worker logs can then be searched by the id the sender holds.
        envelope = build_envelope(task_name, args, queue, task_id=message_id, argsrepr=argsrepr)
        command = (
            3,
            idempotency_key or "clinicq:idem:none",
            queue,
            accepted_key(message_id),
            message_id,
            idempotency_ttl,
            envelope,
            ACCEPTED_MARKER_TTL,
            "1" if idempotency_key else "0",
        )
        try:
            result = self._execute("EVALSHA", self._sha, *command)
        except redis.exceptions.NoScriptError:
            # First use on this server, or it restarted: EVAL loads it.
            result = self._execute("EVAL", _PUBLISH_LUA, *command)
        if self._wait_aof_timeout_ms is not None:
            # Same connection: WAITAOF covers this client's own writes.
            local, _replicas = self._execute("WAITAOF", 1, 0, self._wait_aof_timeout_ms)
            if int(local) < 1:
                raise redis.TimeoutError("Redis did not fsync the AOF in time")
        first_id = result.decode() if isinstance(result, bytes) else str(result)
        return first_id, first_id == message_id


# --- tasks by name, and publishing through Celery ------------------------------
#
# The worker modules (workers/tasks/*.py) register their tasks under these
# names; everything below `workers/` publishes by name, so no module of
# shared/ imports the workers. celeryconfig.py routes each prefix to its queue.

SEND_EMAIL = "clinicq.send.email"
SEND_SMS = "clinicq.send.sms"
SEND_WHATSAPP = "clinicq.send.whatsapp"

INBOUND_PROCESS = "clinicq.inbound.process"
INBOUND_REACT = "clinicq.inbound.react"
INBOUND_STATUS_UPDATE = "clinicq.inbound.status_update"
INBOUND_APPOINTMENT_EVENT = "clinicq.inbound.appointment_event"

INBOX_POST_MESSAGE = "clinicq.inbox.post_message"
INBOX_LABELS = "clinicq.inbox.labels"
INBOX_EVENT = "clinicq.inbox.event"
INBOX_NOTE = "clinicq.inbox.note"

MAINTENANCE_POLL_IMAP = "clinicq.maintenance.poll_imap"


@functools.cache
def celery_app() -> Celery:
    """The process's one Celery application (settings: celeryconfig.py).

    workers/app.py adds the task modules and the worker signals to this same
    object; a publisher needs neither. Every message it publishes — retries
    included — shows Flower and the worker logs ids only, never the patient
    data in its arguments (shared/core/task_repr.py)."""
    from celery import Celery
    from celery.signals import before_task_publish

    app = Celery("clinicq")
    app.config_from_object("celeryconfig")
    before_task_publish.connect(redact_task_headers, weak=False)
    return app


def send_task(
    name: str,
    args: Sequence[Any] = (),
    kwargs: dict[str, Any] | None = None,
    argsrepr: str | None = None,
    kwargsrepr: str | None = None,
    **options: Any,
) -> None:
    """Publish task `name` (one of the constants above) with Celery; the
    routes in celeryconfig.py choose its queue. `options` are
    `apply_async`'s (countdown, …)."""
    celery_app().send_task(
        name,
        args=list(args),
        kwargs=kwargs or {},
        argsrepr=argsrepr if argsrepr is not None else redacted_argsrepr(args),
        kwargsrepr=kwargsrepr if kwargsrepr is not None else redacted_kwargsrepr(kwargs),
        **options,
    )
