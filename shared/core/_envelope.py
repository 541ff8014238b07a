"""The hand-built publish path behind `taskqueue.TaskPublisher`.

Celery's `apply_async` costs more than the rest of a webhook request
(bench/: ~0.34x of a no-op endpoint on 2 cores). Ingest instead writes the
same Celery protocol-v2 envelope that kombu's Redis transport writes (an
LPUSH of a JSON document onto the list named after the queue) — and does it
inside one Lua script that also takes the idempotency key and sets the
"accepted" marker, so dedupe + enqueue + marker are one atomic round trip:
either the task is on the queue and the key is taken, or neither.

Each thread sends its commands on a connection of its own, outside
redis-py's pool: the pool's checkout/checkin with its observability hooks
costs ~50 µs a command in redis-py 8, a few percent of a webhook request
(bench/ingest.py). The connection is still redis-py's (same settings, same
protocol code); only the pooling is skipped.

The envelope format is checked end to end: real Celery workers consume what
ingest published here (tests/integration/test_inbound_pipeline.py, among
others), so a format Celery cannot read fails the suite.
"""

from __future__ import annotations

import base64
import os
import socket
import threading
import time
import uuid
from typing import Any

import orjson
import redis

from shared.core.task_repr import PUBLISHED_AT_HEADER, redacted_argsrepr

_ORIGIN = f"ingest@{socket.gethostname()}"
_EMBED = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}

# KEYS: idempotency key, queue list, accepted marker
# ARGV: message id, idempotency ttl, envelope, marker ttl, use-idempotency flag
PUBLISH_LUA = """
if ARGV[5] == '1' then
  local existing = redis.call('GET', KEYS[1])
  if existing then return existing end
  redis.call('SET', KEYS[1], ARGV[1], 'EX', tonumber(ARGV[2]))
end
redis.call('LPUSH', KEYS[2], ARGV[3])
redis.call('SET', KEYS[3], '1', 'EX', tonumber(ARGV[4]))
return ARGV[1]
"""


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
            # When it entered the queue: the age of the oldest waiting task
            # (shared/runtime/metrics_collector.py) is read from it.
            PUBLISHED_AT_HEADER: time.time(),
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


class ThreadConnections:
    """One unpooled redis-py connection per thread (and per process: a
    forked child opens its own), with one retry on a stale connection."""

    def __init__(self, client: redis.Redis) -> None:
        self._pool = client.connection_pool
        self._local = threading.local()

    def _connection(self) -> Any:
        local = self._local
        conn = getattr(local, "conn", None)
        if conn is None or local.pid != os.getpid():  # first use, or a forked child
            conn = self._pool.connection_class(**self._pool.connection_kwargs)
            local.conn, local.pid, local.proven = conn, os.getpid(), False
        return conn

    def execute(self, *args: Any) -> Any:
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
