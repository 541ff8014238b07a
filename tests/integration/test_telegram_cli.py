"""`clinicq telegram set-webhook` against FakeTelegram (real HTTP): the
webhook is registered with our URL, secret and update kinds; missing
settings and Telegram's refusals are clear errors."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from shared.core.config import get_settings
from shared.runtime.cli import main
from tests.fakes import FakeTelegram
from tests.integration.test_telegram_webhook import TELEGRAM_WEBHOOK_SECRET


@pytest.fixture
def telegram() -> Iterator[FakeTelegram]:
    with FakeTelegram() as fake:
        yield fake  # type: ignore[misc]


@pytest.fixture
def environ(monkeypatch: pytest.MonkeyPatch, telegram: FakeTelegram) -> Iterator[Any]:
    def apply(**values: str) -> None:
        for name, value in values.items():
            monkeypatch.setenv(name, value)
        get_settings.cache_clear()

    apply(**telegram.env(), TELEGRAM_WEBHOOK_SECRET=TELEGRAM_WEBHOOK_SECRET,
          PUBLIC_BASE_URL="https://clinica.example.com.br")
    yield apply
    monkeypatch.undo()
    get_settings.cache_clear()


def test_set_webhook_registers_url_secret_and_updates(
    environ: Any, telegram: FakeTelegram, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["telegram", "set-webhook"]) == 0
    assert telegram.webhook == {
        "url": "https://clinica.example.com.br/webhooks/telegram",
        "secret_token": TELEGRAM_WEBHOOK_SECRET,
        "allowed_updates": ["message", "callback_query"],
    }
    out = capsys.readouterr().out
    assert "https://clinica.example.com.br/webhooks/telegram" in out and "Webhook was set" in out
    assert TELEGRAM_WEBHOOK_SECRET not in out


@pytest.mark.parametrize("missing", ["TELEGRAM_BOT_TOKEN", "TELEGRAM_WEBHOOK_SECRET"])
def test_missing_setting_is_named(
    environ: Any, telegram: FakeTelegram, capsys: pytest.CaptureFixture[str], missing: str
) -> None:
    environ(**{missing: ""})
    assert main(["telegram", "set-webhook"]) == 2
    assert f"{missing} must be set" in capsys.readouterr().err
    assert telegram.webhook is None and telegram.requests == []


def test_telegram_refusal_is_reported(
    environ: Any, telegram: FakeTelegram, capsys: pytest.CaptureFixture[str]
) -> None:
    environ(PUBLIC_BASE_URL="http://127.0.0.1:8000")  # Telegram calls HTTPS only
    assert main(["telegram", "set-webhook"]) == 1
    assert "An HTTPS URL must be provided for webhook" in capsys.readouterr().err
    assert telegram.webhook is None
