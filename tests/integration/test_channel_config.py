"""A channel without credentials (ARCHITECTURE rule 10): the outbox in dev
mode only; in production it is reported (/readyz, `clinicq channels`) and its
messages end `failed` with a reason — never `delivered`. A half-configured
provider stops start-up, naming the missing variable."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from shared.core.config import ConfigError, get_settings, load_settings
from shared.core.db import session_scope
from shared.core.models import Message, MessageEvent
from tests.helpers import dumps, seed_payload, sign_headers, wait_for

ROOT = Path(__file__).resolve().parents[2]
ONCALL = "+5511977776666"
TWILIO_VARS = ("TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN", "TWILIO_PHONE_NUMBER",
               "TWILIO_WHATSAPP_NUMBER", "SMTP_HOST", "WHATSAPP_TOKEN", "WHATSAPP_PHONE_NUMBER_ID")


@pytest.fixture
def production(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """Dev mode off, no provider credentials at all; settings reloaded."""
    monkeypatch.setenv("CLINICQ_DEV_MODE", "false")
    for name in TWILIO_VARS:
        monkeypatch.delenv(name, raising=False)
    get_settings.cache_clear()
    yield {"CLINICQ_DEV_MODE": "false"}
    monkeypatch.undo()
    get_settings.cache_clear()


def test_half_configured_twilio_is_a_startup_error_naming_the_variable(
    production: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TWILIO_ACCOUNT_SID", "AC" + "1" * 32)
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", "token")
    monkeypatch.setenv("WHATSAPP_PROVIDER", "meta")
    with pytest.raises(ConfigError) as raised:
        load_settings()
    assert "TWILIO_PHONE_NUMBER must be set" in str(raised.value)
    # Dev mode: the outbox stands in, start-up goes on.
    monkeypatch.setenv("CLINICQ_DEV_MODE", "true")
    assert load_settings().TWILIO_PHONE_NUMBER == ""


def test_readyz_reports_unconfigured_channels_outside_dev_mode(production: dict[str, str]) -> None:
    from ingest.app import create_app

    client = create_app(load_settings()).test_client()
    doc = client.get("/readyz").get_json()
    assert doc["unconfigured_channels"] == [
        "email", "sms", "whatsapp", "telegram", "messenger", "instagram"
    ]
    assert doc["channels"]["sms"] == {
        "state": "unconfigured",
        "missing": ["TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN", "TWILIO_PHONE_NUMBER"],
    }


def test_readyz_in_dev_mode_shows_the_outbox(client: Any) -> None:
    doc = client.get("/readyz").get_json()
    assert doc["unconfigured_channels"] == []
    assert doc["channels"]["sms"]["state"] == "outbox"


def test_cli_channels_reports_unconfigured_and_exits_non_zero(production: dict[str, str]) -> None:
    out = subprocess.run([sys.executable, "-m", "shared.runtime.cli", "channels"], cwd=ROOT,
                         env=os.environ.copy(), capture_output=True, text=True, timeout=60)
    assert out.returncode == 1, out.stderr
    lines = out.stdout.splitlines()
    assert lines[1].startswith("sms: UNCONFIGURED (its messages fail")
    assert "TWILIO_PHONE_NUMBER" in lines[1]


def test_urgent_oncall_sms_fails_with_a_reason_outside_dev_mode(
    production: dict[str, str], client: Any, celery_worker: Any
) -> None:
    env = {**production, "ONCALL_PHONE": ONCALL, "QUIET_HOURS_CHANNELS": ""}
    celery_worker(queues="inbound,sms", env=env)
    payload = seed_payload()
    payload["contact"] = {"name": "Rita Alves", "phone": "+5511955554444"}
    payload["message"] = {"text": "Dr to com febre e sangrando muito depois da lipo"}
    body = dumps(payload)
    assert client.post("/api/webhook", data=body, headers=sign_headers(body)).status_code == 202

    def oncall() -> Message | None:
        with session_scope() as s:
            row = s.scalar(select(Message).where(Message.to_address == ONCALL))
            return row if row is not None and row.status not in ("queued", "sending") else None

    row = wait_for(oncall, timeout=60)
    assert row.status == "failed"
    assert row.error_code == "channel_not_configured"
    assert row.status_reason is not None and "TWILIO_PHONE_NUMBER" in row.status_reason
    assert row.delivered_at is None
    # Failed before any claim or rate-limit wait: nothing was attempted.
    assert row.attempts == 0
    with session_scope() as s:
        events = s.scalars(select(MessageEvent.event).where(MessageEvent.message_id == row.id)
                           .order_by(MessageEvent.id)).all()
    assert events == ["created", "failed"]
