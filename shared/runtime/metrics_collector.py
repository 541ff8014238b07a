"""Scrape-time gauges of what waits: per Celery queue its depth and the age
of its oldest waiting task (Redis), and the sizes of the tables where work
piles up when something is wrong — dead letters, messages stuck `queued`,
`sending` or `unknown`, scheduled rows overdue (PostgreSQL).

Served by the scheduler's /metrics (one process per deployment is enough;
with several schedulers each reports the same figures, so alert rules take
`max`). Computed when Prometheus scrapes, with short timeouts: a scrape
during an outage reports `clinicq_collector_up 0` instead of hanging.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

import orjson
import redis
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import text

from shared.core.channels import QUEUES
from shared.core.config import get_settings
from shared.core.db import get_engine
from shared.core.task_repr import PUBLISHED_AT_HEADER
from shared.core.taskqueue import queue_lists

log = logging.getLogger(__name__)

# One statement, every figure: each a count over an index (status columns).
_TABLE_SIZES = text(
    """
    SELECT
      (SELECT count(*) FROM dead_letters WHERE replayed_at IS NULL) AS dead_letters,
      (SELECT count(*) FROM messages WHERE status = 'queued') AS messages_queued,
      (SELECT count(*) FROM messages WHERE status = 'sending') AS messages_sending,
      (SELECT count(*) FROM messages WHERE status = 'unknown') AS messages_unknown,
      (SELECT count(*) FROM scheduled_messages
         WHERE status = 'pending' AND due_at < now()) AS scheduled_overdue
    """
)


def _oldest_age(client: redis.Redis, queue: str, now: float) -> float:
    """Kombu LPUSHes and workers BRPOP: the oldest waiting task is the last
    element. 0 for an empty queue or a task without the header."""
    raw = client.lindex(queue, -1)
    if raw is None:
        return 0.0
    try:
        published = orjson.loads(raw)["headers"].get(PUBLISHED_AT_HEADER)
    except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
        return 0.0
    if not isinstance(published, int | float):
        return 0.0
    return max(0.0, now - float(published))


class BacklogCollector(Collector):
    def __init__(self, redis_url: str | None = None) -> None:
        url = redis_url or get_settings().REDIS_URL
        self._redis = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)

    def collect(self) -> Iterator[Any]:
        up = GaugeMetricFamily(
            "clinicq_collector_up", "1 when the backlog figures could be read", labels=["source"]
        )
        yield from self._queues(up)
        yield from self._tables(up)
        yield up

    def _queues(self, up: GaugeMetricFamily) -> Iterator[Any]:
        depth = GaugeMetricFamily(
            "clinicq_queue_depth", "Tasks waiting in the queue", labels=["queue"]
        )
        age = GaugeMetricFamily(
            "clinicq_queue_oldest_task_age_seconds",
            "Age of the oldest task waiting in the queue (0 when empty)",
            labels=["queue"],
        )
        try:
            now = time.time()
            # A queue is one Redis list per priority step (first runs of
            # sends wait at a lower one: shared/core/taskqueue.py).
            pipe = self._redis.pipeline(transaction=False)
            for queue in QUEUES:
                for key in queue_lists(queue):
                    pipe.llen(key)
            lengths = iter(pipe.execute())
            for queue in QUEUES:
                keys = [(key, next(lengths)) for key in queue_lists(queue)]
                depth.add_metric([queue], float(sum(length for _, length in keys)))
                age.add_metric([queue], max(
                    (_oldest_age(self._redis, key, now) for key, length in keys if length),
                    default=0.0))
        except redis.RedisError:
            log.warning("queue metrics unavailable: Redis unreachable")
            up.add_metric(["redis"], 0.0)
            return
        up.add_metric(["redis"], 1.0)
        yield depth
        yield age

    def _tables(self, up: GaugeMetricFamily) -> Iterator[Any]:
        sizes = GaugeMetricFamily(
            "clinicq_backlog_rows",
            "Rows waiting for attention, by kind (dead letters, stuck messages, overdue rows)",
            labels=["kind"],
        )
        try:
            with get_engine().connect() as conn:
                conn.execute(text("SET LOCAL statement_timeout = 2000"))
                row = conn.execute(_TABLE_SIZES).mappings().one()
        except Exception:  # noqa: BLE001 - a scrape must answer during an outage
            log.warning("table metrics unavailable: database unreachable")
            up.add_metric(["postgres"], 0.0)
            return
        up.add_metric(["postgres"], 1.0)
        for kind, value in row.items():
            sizes.add_metric([kind], float(value))
        yield sizes
