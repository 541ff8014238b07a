"""GET /metrics under the real gunicorn configuration: counts from every
worker process are summed (prometheus-client multiprocess mode)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers import dumps, seed_payload, sign_headers
from tests.integration.processes import gunicorn_server


@pytest.fixture
def gunicorn_two_workers(tmp_path: Path):
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    with gunicorn_server(tmp_path / "gunicorn.log", env, workers=2) as base:
        yield base


def samples(text: str, name: str) -> dict[tuple, float]:
    out: dict[tuple, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name:
                out[tuple(sorted(s.labels.items()))] = s.value
    return out


def test_metrics_sum_requests_across_gunicorn_workers(gunicorn_two_workers) -> None:
    base = gunicorn_two_workers
    for _ in range(6):
        body = dumps(seed_payload())
        # A new connection each time: gunicorn's sync workers take turns.
        r = requests.post(f"{base}/api/webhook", data=body, headers=sign_headers(body), timeout=10)
        assert r.status_code == 202
    bad = dumps(seed_payload(channel="fax"))
    assert requests.post(
        f"{base}/api/webhook", data=bad, headers=sign_headers(bad), timeout=10
    ).status_code == 400

    text = requests.get(f"{base}/metrics", timeout=10).text
    counts = samples(text, "clinicq_http_requests_total")
    key = lambda status: (("endpoint", "webhook.receive_webhook"), ("method", "POST"), ("status", status))  # noqa: E731
    assert counts[key("202")] == 6
    assert counts[key("400")] == 1
    latency = samples(text, "clinicq_http_request_duration_seconds_count")
    assert latency[(("endpoint", "webhook.receive_webhook"),)] == 7
    assert "joao" not in text.lower()  # no payload data in metrics


def test_metrics_endpoint_with_the_flask_client(client) -> None:
    body = dumps(seed_payload())
    assert client.post("/api/webhook", data=body, headers=sign_headers(body)).status_code == 202
    resp = client.get("/metrics")
    assert resp.status_code == 200
    assert resp.mimetype == "text/plain"
    assert "clinicq_http_requests_total" in resp.get_data(as_text=True)


def test_metric_labels_are_bounded_whatever_the_client_sends(gunicorn_two_workers) -> None:
    # Any token is a valid HTTP method; each junk one used to become a series
    # that lived as long as the process.
    base = gunicorn_two_workers
    junk = [f"JUNK{chr(65 + n)}" for n in range(20)] + ["BREW", "PROPFIND"]
    for method in junk:
        r = requests.request(method, f"{base}/api/webhook", timeout=10)
        assert r.status_code in (400, 405), (method, r.status_code)
        requests.request(method, f"{base}/no/such/path/{method}", timeout=10)
    text = requests.get(f"{base}/metrics", timeout=10).text
    counts = samples(text, "clinicq_http_requests_total")
    methods = {dict(labels)["method"] for labels in counts}
    assert methods <= {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "other"}
    assert "other" in methods
    assert not any(m in text for m in junk)
    other = sum(v for labels, v in counts.items() if dict(labels)["method"] == "other")
    assert other == 2 * len(junk)
    endpoints = {dict(labels)["endpoint"] for labels in counts}
    assert not any("no/such" in e for e in endpoints)
