"""GET /metrics under the real gunicorn configuration: counts from every
worker process are summed (prometheus-client multiprocess mode)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from shared.embedded import free_port, stop_process
from tests.conftest import dumps, seed_payload, sign_headers, wait_for
from tests.infra import ROOT


@pytest.fixture
def gunicorn_two_workers(tmp_path: Path):
    port = free_port()
    log = open(tmp_path / "gunicorn.log", "wb")
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", "ingest/gunicorn_conf.py",
         "--bind", f"127.0.0.1:{port}", "--workers", "2", "ingest.app:wsgi()"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"

    def up() -> bool:
        if proc.poll() is not None:
            raise AssertionError((tmp_path / "gunicorn.log").read_text())
        try:
            return requests.get(f"{base}/healthz", timeout=1).status_code == 200
        except requests.RequestException:
            return False

    wait_for(up, timeout=30)
    yield base
    stop_process(proc)
    log.close()


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
    bad = dumps(seed_payload(channel="telegram"))
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
