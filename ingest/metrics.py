"""Prometheus metrics for ingest: `GET /metrics`.

Under gunicorn every worker is its own process, so the counters live in
prometheus-client's multiprocess mode: `ingest/gunicorn_conf.py` points
PROMETHEUS_MULTIPROC_DIR at a fresh directory before the workers fork, and
`/metrics` sums the files of all workers. Without that variable (tests with
the Flask client, one process) the default registry is used.

Every label takes values from a fixed set, so no client can create series:
the Flask endpoint name (never the raw path, which carries message ids;
"unmatched" for a 404), the method (the standard ones, anything else
"other": a client may send any token as a method) and the status code
(100-599, else "other"). No payload data, no PII.
"""

from __future__ import annotations

import functools
import os
import time
from typing import Any

from flask import Blueprint, Flask, Response, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)

bp = Blueprint("metrics", __name__)

REQUESTS = Counter(
    "clinicq_http_requests_total",
    "HTTP requests answered by ingest",
    ["endpoint", "method", "status"],
)
LATENCY = Histogram(
    "clinicq_http_request_duration_seconds",
    "Time from request start to response, per endpoint",
    ["endpoint"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)


def _registry() -> Any:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return registry
    from prometheus_client import REGISTRY

    return REGISTRY


@bp.get("/metrics")
def metrics() -> Response:
    return Response(generate_latest(_registry()), mimetype=CONTENT_TYPE_LATEST)


# `labels()` looks the child up under a lock on every call; the label sets
# are bounded (endpoint x method x status), so each process keeps its children.
_request_counter = functools.cache(REQUESTS.labels)
_latency_histogram = functools.cache(LATENCY.labels)


_T0 = "clinicq.request_t0"
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def _method_label(method: str) -> str:
    return method if method in METHODS else "other"


def _status_label(status: int) -> str:
    return str(status) if 100 <= status <= 599 else "other"


def _finish(response: Response) -> Response:
    endpoint = request.endpoint or "unmatched"
    if endpoint != "metrics.metrics":
        _request_counter(
            endpoint, _method_label(request.method), _status_label(response.status_code)
        ).inc()
        t0 = request.environ.get(_T0)
        if t0 is not None:
            _latency_histogram(endpoint).observe(time.perf_counter() - t0)
    return response


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
    inner = app.wsgi_app

    # The start time goes into the WSGI environ before Flask sees the request
    # (a before_request hook and `g` cost more per request than the clock).
    def timed_wsgi_app(environ: dict[str, Any], start_response: Any) -> Any:
        environ[_T0] = time.perf_counter()
        return inner(environ, start_response)

    app.wsgi_app = timed_wsgi_app  # type: ignore[method-assign]
    app.after_request(_finish)
