"""What Flower and worker logs show of a task's arguments.

Celery puts `argsrepr`/`kwargsrepr` in every task message's headers; the
worker logs them and broadcasts them in `task-received` events, which Flower
lists. Celery builds them from the real arguments whenever the publisher
gives none — and a retry (`Task.retry` → signature → `apply_async`) never
carries the first publish's, so without this every retried inbound message
would show its patient's name, phone and text in Flower for the length of an
outage. `redact_task_headers` is connected to `before_task_publish`
(shared/core/taskqueue.py, with the Celery app every process publishes and
works through) so every message Celery publishes, retries included, carries
only this redacted form; ingest's hand-built envelopes use `redacted_argsrepr`.

Only ids survive: UUID strings (message, contact, task ids) and integers.
Every other value shows as its type, never its content.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping, Sequence
from typing import Any

_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


def _one(value: Any) -> str:
    if isinstance(value, str):
        return repr(value) if _UUID.fullmatch(value) else "'…'"
    if isinstance(value, bool) or value is None or isinstance(value, int):
        return repr(value)
    if isinstance(value, Mapping):
        return "{…}"
    if isinstance(value, list | tuple):
        return "[…]"
    return f"<{type(value).__name__}>"


def redacted_argsrepr(args: Sequence[Any] | None) -> str:
    return "[" + ", ".join(_one(a) for a in args or ()) + "]"


def redacted_kwargsrepr(kwargs: Mapping[str, Any] | None) -> str:
    # Keyword names are the task's parameter names, chosen in code.
    return "{" + ", ".join(f"{k!r}: {_one(v)}" for k, v in (kwargs or {}).items()) + "}"


# Header every published task carries: epoch seconds when it was published
# (the queue-age metric reads the oldest waiting task's).
PUBLISHED_AT_HEADER = "clinicq_published_at"


def redact_task_headers(headers: dict[str, Any] | None, body: Any, **_: Any) -> None:
    """`before_task_publish` receiver: overwrite the message's argsrepr and
    kwargsrepr (protocol 2 keeps them in the headers; the body is
    `(args, kwargs, embed)`) with the redacted form, and stamp the publish
    time."""
    if not headers or "argsrepr" not in headers:
        return
    headers[PUBLISHED_AT_HEADER] = time.time()
    args: Any = ()
    kwargs: Any = {}
    if isinstance(body, list | tuple) and len(body) >= 2:
        args, kwargs = body[0], body[1]
    headers["argsrepr"] = redacted_argsrepr(args)
    headers["kwargsrepr"] = redacted_kwargsrepr(kwargs)
