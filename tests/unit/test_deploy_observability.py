"""deploy/: the Prometheus scrape config, the alert rules (checked and
unit-tested by promtool), the Grafana dashboard (loads: schema and every
metric it plots exists), and the compose profile that runs them.

promtool comes from Debian's `prometheus` package; .ci/run installs it and
sets CLINICQ_REQUIRE_PROMTOOL=1, so in CI these checks cannot skip."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import warnings
from pathlib import Path
from typing import Any

import jsonschema_rs
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
PROMETHEUS = DEPLOY / "prometheus"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "clinicq.json"


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        if os.environ.get("CLINICQ_REQUIRE_PROMTOOL") == "1":
            pytest.fail("promtool is required here (CLINICQ_REQUIRE_PROMTOOL=1)")
        message = "PROMTOOL CHECKS SKIPPED: no promtool (apt-get install prometheus)"
        warnings.warn(message, stacklevel=2)
        pytest.skip(message)
    return path


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=60, cwd=PROMETHEUS)


def test_alert_rules_are_valid() -> None:
    result = run(promtool(), "check", "rules", "alerts.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_alert_rules_fire_on_their_series_and_only_there() -> None:
    result = run(promtool(), "test", "rules", "alerts_test.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_scrape_config_is_valid() -> None:
    result = run(promtool(), "check", "config", "prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_alerts_cover_what_ops_must_hear_about() -> None:
    rules = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())
    exprs = " ".join(r["expr"] for g in rules["groups"] for r in g["rules"])
    for metric in (
        "clinicq_queue_oldest_task_age_seconds",  # queue age
        "clinicq_sends_total",  # failure rate per channel
        "clinicq_scheduler_lag_seconds_bucket",  # scheduler lag
        'kind="dead_letters"',  # dead letters
        "clinicq_provider_errors_total",  # credentials / certificates
    ):
        assert metric in exprs, metric


def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_every_worker_service_and_the_scheduler_are_scraped() -> None:
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    scraped = {
        (name, sd["port"])
        for job in jobs.values()
        for sd in job.get("dns_sd_configs", [])
        for name in sd["names"]
    }
    services = compose()["services"]
    for name in services:
        if name.startswith("worker-") or name == "scheduler":
            assert (name, 9100) in scraped, f"{name} is not scraped by deploy/prometheus"
    assert ("ingest", 8000) in scraped
    env = compose()["x-clinicq-env"]
    assert "WORKER_METRICS_PORT=${WORKER_METRICS_PORT:-9100}" in env
    assert "SCHEDULER_METRICS_PORT=${SCHEDULER_METRICS_PORT:-9100}" in env


def test_observability_profile_mounts_the_deploy_files() -> None:
    services = compose()["services"]
    for name in ("prometheus", "grafana"):
        assert services[name]["profiles"] == ["observability"]
        for volume in services[name]["volumes"]:
            source = volume.split(":", 1)[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), source


# The part of Grafana's dashboard model a provisioned dashboard must have for
# Grafana to load and draw it.
DASHBOARD_SCHEMA = {
    "type": "object",
    "required": ["uid", "title", "schemaVersion", "panels"],
    "properties": {
        "uid": {"type": "string", "pattern": "^[a-zA-Z0-9_-]{1,40}$"},
        "title": {"type": "string", "minLength": 1},
        "schemaVersion": {"type": "integer", "minimum": 30},
        "panels": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["id", "type", "title", "gridPos", "targets", "datasource"],
                "properties": {
                    "id": {"type": "integer"},
                    "type": {"enum": ["timeseries", "stat", "gauge", "table", "bargauge"]},
                    "gridPos": {
                        "type": "object",
                        "required": ["h", "w", "x", "y"],
                        "properties": {k: {"type": "integer", "minimum": 0} for k in "hwxy"},
                    },
                    "datasource": {
                        "type": "object",
                        "required": ["type", "uid"],
                        "properties": {"uid": {"const": "clinicq-prometheus"}},
                    },
                    "targets": {
                        "type": "array",
                        "minItems": 1,
                        "items": {"type": "object", "required": ["refId", "expr"]},
                    },
                },
            },
        },
    },
}


def exported_metric_names() -> set[str]:
    """Every series name our processes can export (the objects' own names,
    histogram suffixes included, and the scrape-time collector's)."""
    from prometheus_client import REGISTRY

    import ingest.metrics  # noqa: F401 - registers the HTTP metrics
    import shared.core.metrics  # noqa: F401

    names: set[str] = set()
    for collector in list(REGISTRY._collector_to_names):  # noqa: SLF001
        for family in collector.describe() if hasattr(collector, "describe") else []:
            names.add(family.name)
            names.update(
                f"{family.name}{suffix}" for suffix in ("_total", "_bucket", "_count", "_sum")
            )
    source = (ROOT / "shared" / "runtime" / "metrics_collector.py").read_text()
    names.update(re.findall(r'"(clinicq_[a-z_]+)"', source))
    return names


def test_dashboard_loads_and_plots_only_metrics_that_exist() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    jsonschema_rs.validate(DASHBOARD_SCHEMA, dashboard)
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    provisioned = (DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml")
    assert "uid: clinicq-prometheus" in provisioned.read_text()
    known = exported_metric_names()
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            for name in re.findall(r"\bclinicq_[a-z_]+", target["expr"]):
                assert name in known, f"panel {panel['title']!r} plots {name}, which nothing exports"
