"""Publishing Celery tasks: by name through Celery, or straight to Redis on
the ingest hot path.

`TaskPublisher` takes the idempotency key, enqueues the task and sets the
"accepted" marker in one atomic round trip: either the task is on the queue
and the key is taken, or neither. How it does that cheaply (a hand-built
Celery envelope, a Lua script, unpooled connections) and what that saves is
in shared/core/_envelope.py.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import redis

from shared.core._envelope import PUBLISH_LUA, ThreadConnections, build_envelope
from shared.core.task_repr import redact_task_headers, redacted_argsrepr, redacted_kwargsrepr

if TYPE_CHECKING:
    from celery import Celery

ACCEPTED_MARKER_TTL = 7 * 24 * 3600

# A send's FIRST run is published at a lower priority than everything else.
# kombu's Redis transport keeps one list per priority step (0 is the plain
# queue name and the highest; 3 is `<queue>\x06\x163`) and a worker's BRPOP
# asks the lists in priority order. A send that comes back at its reserved
# rate-limit slot (or after a backoff) is published at the default 0: when
# its time comes it is fetched ahead of a backlog of first runs, instead of
# behind all of them — which left the sender's slots unused while the
# backlog's first pass ran (bench/telegram_limits.py: the sustained rate
# under a backlog). A first run is cheap and never sends before its slot,
# so nothing that is due waits for it.
FIRST_RUN_PRIORITY = 3


def queue_lists(queue: str) -> list[str]:
    """The Redis lists holding `queue`'s waiting tasks, highest priority
    first (what a queue-depth reading must add up): kombu's own steps and
    separator, so they cannot drift from what workers read."""
    from kombu.transport.redis import PRIORITY_STEPS, Channel

    return [queue if step == 0 else f"{queue}{Channel.sep}{step}" for step in PRIORITY_STEPS]


def accepted_key(message_id: str) -> str:
    return f"clinicq:accepted:{message_id}"


def idempotency_redis_key(scope: str, key: str) -> str:
    return f"clinicq:idem:{scope}:{key}"


class TaskPublisher:
    """Atomic dedupe + enqueue on Redis. One instance per process."""

    def __init__(self, client: redis.Redis, wait_aof_timeout_ms: int | None = None) -> None:
        # REDIS_DURABILITY=waitaof: after each publish, wait until Redis's AOF
        # fsync covers it (shared/core/redis_durability.py).
        self._wait_aof_timeout_ms = wait_aof_timeout_ms
        self._connections = ThreadConnections(client)
        self._sha = client.register_script(PUBLISH_LUA).sha

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
        execute = self._connections.execute
        try:
            result = execute("EVALSHA", self._sha, *command)
        except redis.exceptions.NoScriptError:
            # First use on this server, or it restarted: EVAL loads it.
            result = execute("EVAL", PUBLISH_LUA, *command)
        if self._wait_aof_timeout_ms is not None:
            # Same connection: WAITAOF covers this client's own writes.
            local, _replicas = execute("WAITAOF", 1, 0, self._wait_aof_timeout_ms)
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
SEND_MESSENGER = "clinicq.send.messenger"
SEND_INSTAGRAM = "clinicq.send.instagram"
SEND_TELEGRAM = "clinicq.send.telegram"

INBOUND_PROCESS = "clinicq.inbound.process"
INBOUND_REACT = "clinicq.inbound.react"
INBOUND_STATUS_UPDATE = "clinicq.inbound.status_update"
INBOUND_APPOINTMENT_EVENT = "clinicq.inbound.appointment_event"

INBOX_POST_MESSAGE = "clinicq.inbox.post_message"
INBOX_LABELS = "clinicq.inbox.labels"
INBOX_EVENT = "clinicq.inbox.event"
INBOX_NOTE = "clinicq.inbox.note"
INBOX_WIDGET_REPLY = "clinicq.inbox.widget_reply"

MAINTENANCE_POLL_IMAP = "clinicq.maintenance.poll_imap"

WEBHOOK_DELIVER = "clinicq.webhooks.deliver"


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
