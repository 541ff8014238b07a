"""Prometheus metrics of the workers and the scheduler (ingest has its own
HTTP metrics in ingest/metrics.py).

The metric objects live here, at the bottom of the layers, so the step that
knows a fact counts it where it happens (delivery counts sends, the claim
counts rows). Exposition is the process's business: `serve_metrics(port)`
starts a small HTTP server that reads prometheus-client's multiprocess files
when PROMETHEUS_MULTIPROC_DIR is set (Celery prefork: each child writes its
own file, the server in the parent sums them), else the process's registry.

Every label takes its values from a fixed set (channel and provider names of
the table, an outcome word, a job name, a provider error code cut to 32
characters): no message id, no address, no text — no PII, no unbounded series.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

log = logging.getLogger(__name__)

SENDS = Counter(
    "clinicq_sends_total",
    "Send attempts by how they ended: sent, delivered, failed, unknown, skipped, retry",
    ["channel", "provider", "outcome"],
)
PROVIDER_LATENCY = Histogram(
    "clinicq_provider_request_seconds",
    "Time a provider's send call took (request to answer, or to the error)",
    ["provider"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
RETRIES = Counter(
    "clinicq_send_retries_total",
    "Sends scheduled for a retry, by provider and reason (the provider's error code)",
    ["provider", "reason"],
)
PROVIDER_ERRORS = Counter(
    "clinicq_provider_errors_total",
    "Provider errors by code and kind (permanent, retryable, unknown outcome); "
    "credential and certificate codes are alerted on",
    ["provider", "code", "kind"],
)
RATELIMIT_WAITS = Counter(
    "clinicq_ratelimit_waits_total",
    "Sends that came back later because their sender or recipient was at its rate limit",
    ["channel"],
)
RATELIMIT_WAIT_SECONDS = Histogram(
    "clinicq_ratelimit_wait_seconds",
    "How long a rate-limited send was told to wait",
    ["channel"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
)
SCHEDULER_LAG = Histogram(
    "clinicq_scheduler_lag_seconds",
    "now - due_at of each scheduled row the tick claimed",
    buckets=(0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900, 3600),
)
SCHEDULER_CLAIMED = Counter(
    "clinicq_scheduler_rows_claimed_total",
    "Scheduled rows claimed by the tick",
)
SCHEDULER_CLAIMED_PER_TICK = Histogram(
    "clinicq_scheduler_rows_claimed_per_tick",
    "Rows claimed by one tick",
    buckets=(0, 1, 5, 10, 50, 100, 500, 1000, 5000),
)
JOB_RUNS = Counter(
    "clinicq_scheduler_job_runs_total",
    "Periodic maintenance jobs run, by job and outcome (ok, error)",
    ["job", "outcome"],
)
# The backlog gauges (queue depth and age, stuck rows) are computed at scrape
# time by shared/runtime/metrics_collector.py.
UP = Gauge(
    "clinicq_process_up",
    "1 while the process serves metrics",
    ["process"],
    multiprocess_mode="max",
)


def code_label(code: str | None) -> str:
    """A provider error code as a label: bounded length, never empty."""
    return (code or "unspecified")[:32]


def metrics_registry() -> Any:
    """What a scrape reads: every child's files in multiprocess mode, else
    this process's default registry."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return registry
    from prometheus_client import REGISTRY

    return REGISTRY


def serve_metrics(port: int, process: str, extra: Any = None) -> Any:
    """Start the /metrics HTTP server of this process on `port` (0: off).
    `extra`, a collector, is registered with what the server reads."""
    if not port:
        return None
    registry = metrics_registry()
    if extra is not None:
        registry.register(extra)
    # All interfaces: Prometheus scrapes from another container or host.
    addr = os.environ.get("METRICS_ADDR", "0.0.0.0")  # noqa: S104
    server, _thread = start_http_server(port, addr=addr, registry=registry)
    UP.labels(process).set(1)
    log.info("metrics served", extra={"port": port, "metrics_of": process})
    return server
