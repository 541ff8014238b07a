"""Start-up configuration errors name the bad setting."""

from __future__ import annotations

import subprocess
import sys

import pytest

from shared.config import ConfigError, Settings, load_settings
from tests.infra import ROOT


def test_bad_timezone_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLINIC_TIMEZONE", "America/Atlantis")
    with pytest.raises(ConfigError, match="CLINIC_TIMEZONE"):
        load_settings()


def test_bad_signing_secret_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WEBHOOK_SIGNING_SECRETS", "whsec_***not-base64***")
    with pytest.raises(ConfigError, match="WEBHOOK_SIGNING_SECRETS"):
        load_settings()


def test_visibility_timeout_must_exceed_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CELERY_VISIBILITY_TIMEOUT", "60")
    monkeypatch.setenv("MAX_RETRY_BACKOFF_SECONDS", "600")
    with pytest.raises(ConfigError, match="CELERY_VISIBILITY_TIMEOUT"):
        load_settings()


def test_no_webhook_secret_refuses_to_start() -> None:
    settings = Settings(
        DATABASE_URL="postgresql://x/y", REDIS_URL="redis://x", SECRET_KEY="k",
        WEBHOOK_SIGNING_SECRETS=[], WEBHOOK_SECRET="", CLINICQ_INSECURE_DEV=False,
    )
    with pytest.raises(ConfigError, match="WEBHOOK_SIGNING_SECRETS"):
        settings.require_webhook_auth()
    insecure = settings.model_copy(update={"CLINICQ_INSECURE_DEV": True})
    insecure.require_webhook_auth()  # allowed, and loud (see test below)


def test_ingest_process_exits_with_message_when_unconfigured() -> None:
    env = {"PATH": "/usr/bin:/bin", "DATABASE_URL": "postgresql://x/y", "REDIS_URL": "redis://x",
           "SECRET_KEY": "k"}
    proc = subprocess.run(
        [sys.executable, "-c", "from ingest.app import create_app; create_app()"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 2
    assert "WEBHOOK_SIGNING_SECRETS" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_insecure_dev_mode_says_so_loudly(caplog: pytest.LogCaptureFixture) -> None:
    from ingest.app import create_app

    settings = Settings(
        DATABASE_URL="postgresql://x/y", REDIS_URL="redis://x", SECRET_KEY="k",
        WEBHOOK_SIGNING_SECRETS=[], WEBHOOK_SECRET="", CLINICQ_INSECURE_DEV=True,
    )
    with caplog.at_level("WARNING"):
        app = create_app(settings)
    assert app.config["WEBHOOK_AUTH"].insecure
    assert any("INSECURE DEV MODE" in r.getMessage() for r in caplog.records)
