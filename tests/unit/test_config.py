"""Start-up configuration errors name the bad setting."""

from __future__ import annotations

import subprocess
import sys

import pytest

from shared.core.config import ConfigError, Settings, load_settings
from tests.infra import ROOT

STRONG_KEY = "config-tests-key-0123456789-abcdefghij"


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
        DATABASE_URL="postgresql://x/y", REDIS_URL="redis://x", SECRET_KEY=STRONG_KEY,
        WEBHOOK_SIGNING_SECRETS=[], WEBHOOK_SECRET="", CLINICQ_INSECURE_DEV=False,
    )
    with pytest.raises(ConfigError, match="WEBHOOK_SIGNING_SECRETS"):
        settings.require_webhook_auth()
    insecure = settings.model_copy(update={"CLINICQ_INSECURE_DEV": True})
    insecure.require_webhook_auth()  # allowed, and loud (see test below)


def test_ingest_process_exits_with_message_when_unconfigured() -> None:
    env = {"PATH": "/usr/bin:/bin", "DATABASE_URL": "postgresql://x/y", "REDIS_URL": "redis://x",
           "SECRET_KEY": STRONG_KEY}
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
        DATABASE_URL="postgresql://x/y", REDIS_URL="redis://x", SECRET_KEY=STRONG_KEY,
        WEBHOOK_SIGNING_SECRETS=[], WEBHOOK_SECRET="", CLINICQ_INSECURE_DEV=True,
    )
    with caplog.at_level("WARNING"):
        app = create_app(settings)
    assert app.config["WEBHOOK_AUTH"].insecure
    assert any("INSECURE DEV MODE" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("SECRET_KEY", "changeme"),
        ("SECRET_KEY", "a-long-random-string"),  # the README's example
        ("SECRET_KEY", "CHANGE-ME-change-me-change-me-change-me"),
        ("SECRET_KEY", "short-but-random-9f3k"),
        ("SECRET_KEY", "ab" * 20),  # long, but two characters
        ("WEBHOOK_SECRET", "secret"),
        ("CHATWOOT_WEBHOOK_TOKEN", "changeme"),
        ("ROCKETCHAT_LIVECHAT_TOKEN", "token"),
        ("META_VERIFY_TOKEN", "verify-token"),
        ("META_APP_SECRET", "your-secret"),
        ("WEBHOOK_SIGNING_SECRETS", "whsec_c2hvcnQtc2VjcmV0"),  # 12 bytes
    ],
)
def test_weak_or_placeholder_secrets_are_refused_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert name in str(caught.value)
    assert repr(value) not in str(caught.value)  # the message never echoes the value


@pytest.mark.parametrize("module", ["shared.runtime.supervisor", "shared.runtime.cli list-api-keys"])
def test_weak_secret_stops_startup_with_exit_2(tmp_path, module: str) -> None:
    env = {"PATH": "/usr/bin:/bin", "SECRET_KEY": "changeme", "CLINICQ_VAR_DIR": str(tmp_path),
           "WEBHOOK_SIGNING_SECRETS": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}
    proc = subprocess.run(
        [sys.executable, "-m", *module.split()],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 2, proc.stderr
    assert "SECRET_KEY" in proc.stderr and "placeholder" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_generated_and_test_secrets_pass() -> None:
    import secrets as random_secrets

    Settings(
        SECRET_KEY=random_secrets.token_urlsafe(32),
        WEBHOOK_SECRET=random_secrets.token_urlsafe(16),
        META_VERIFY_TOKEN=random_secrets.token_hex(16),
        WEBHOOK_SIGNING_SECRETS="whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    )
