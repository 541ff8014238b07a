"""docker-compose.yml: validated by the docker CLI's compose plugin where it
exists (no engine needed for `config`), and its production shape checked
structurally everywhere."""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest
import yaml

from shared.core.channels import QUEUES  # one worker service per queue of the table
from shared.core.config import Settings
from tests.infra import ROOT

COMPOSE = ROOT / "docker-compose.yml"
REQUIRED = {
    "POSTGRES_PASSWORD": "pg-pass",
    "REDIS_PASSWORD": "redis-pass",
    "SECRET_KEY": "s3cret",
    "WEBHOOK_SIGNING_SECRETS": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    "FLOWER_BASIC_AUTH": "ops:pw",
}


def _compose_cli() -> list[str] | None:
    """`docker compose` (plugin) first; the standalone `docker-compose` too."""
    if shutil.which("docker"):
        probe = subprocess.run(
            ["docker", "compose", "version"], capture_output=True, text=True, check=False
        )
        if probe.returncode == 0:
            return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return None


def _run_config(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    cli = _compose_cli()
    if cli is None:
        pytest.skip("neither the docker compose plugin nor docker-compose is installed")
    clean = {k: v for k, v in os.environ.items() if k not in REQUIRED}
    return subprocess.run(
        [*cli, "-f", str(COMPOSE), "config", "-q"],
        cwd=ROOT, env={**clean, **env}, capture_output=True, text=True, timeout=60, check=False,
    )


def test_compose_config_is_valid_with_the_required_secrets() -> None:
    out = _run_config(REQUIRED)
    assert out.returncode == 0, out.stderr


def test_compose_config_names_a_missing_required_secret() -> None:
    out = _run_config({k: v for k, v in REQUIRED.items() if k != "SECRET_KEY"})
    assert out.returncode != 0
    assert "SECRET_KEY" in out.stderr


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def _env_names(service: dict) -> set[str]:
    return {entry.split("=", 1)[0] for entry in service["environment"]}


def test_compose_has_the_production_shape(compose: dict) -> None:
    services = compose["services"]
    expected = {"postgres", "redis", "migrate", "ingest", "scheduler", "flower", "console"}
    expected |= {f"worker-{q}" for q in QUEUES}
    # The optional `observability` profile (deploy/): not started by default.
    optional = {"prometheus", "grafana"}
    assert set(services) == expected | optional
    assert all(services[name]["profiles"] == ["observability"] for name in optional)

    for queue in QUEUES:
        command = services[f"worker-{queue}"]["command"]
        assert command[command.index("-Q") + 1] == queue

    redis_cmd = " ".join(services["redis"]["command"])
    assert "--appendonly yes" in redis_cmd
    # everysec unless REDIS_APPENDFSYNC=always (REDIS_DURABILITY=always).
    assert "--appendfsync ${REDIS_APPENDFSYNC:-everysec}" in redis_cmd
    assert "--maxmemory-policy noeviction" in redis_cmd

    assert "gunicorn_conf.py" in " ".join(services["ingest"]["command"])
    assert "console/gunicorn_conf.py" in " ".join(services["console"]["command"])
    assert services["migrate"]["command"] == ["python", "-m", "shared.runtime.migrate"]
    assert services["scheduler"]["command"] == ["python", "-m", "scheduler"]


def test_every_clinicq_process_gets_the_same_variables(compose: dict) -> None:
    services = compose["services"]
    clinicq = [
        name for name in services if name not in {"postgres", "redis", "prometheus", "grafana"}
    ]
    first = _env_names(services[clinicq[0]])
    for name in clinicq:
        assert _env_names(services[name]) == first, name
        if name not in {"migrate"}:
            assert services[name]["depends_on"]["migrate"]["condition"] == (
                "service_completed_successfully"
            )
    # The infrastructure wiring and the settings the processes cannot start
    # without are passed; the required secrets use ${VAR:?message}.
    wiring = {"DATABASE_URL", "REDIS_URL", "SECRET_KEY", "WEBHOOK_SIGNING_SECRETS"}
    assert wiring <= first
    assert wiring <= set(Settings.model_fields)
    text = COMPOSE.read_text()
    for secret in REQUIRED:
        assert re.search(r"\$\{" + secret + r":\?", text), secret
    # Flower is behind basic auth.
    assert "FLOWER_BASIC_AUTH" in first
