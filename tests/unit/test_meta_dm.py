"""Messenger and Instagram Direct without the network: their settings (a
half-configured channel stops start-up naming the variable), Meta's messaging
windows, the Send API request the providers build, the classification of
Meta's error codes, and PSID / IGSID normalization."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests

from shared.core import channels
from shared.core.config import ConfigError, Settings, load_settings
from shared.core.identity import InvalidIdentifier, normalize_igsid, normalize_psid
from shared.core.templating import template_buttons
from shared.outbound.messaging_window import HUMAN_AGENT_TAG, decide
from shared.providers.base import OutgoingMessage, PermanentError, RetryableError
from shared.providers.meta.instagram import MetaInstagramProvider
from shared.providers.meta.messenger import MetaMessengerProvider

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)


def _env(monkeypatch: pytest.MonkeyPatch, **values: str) -> None:
    for name in ("MESSENGER_PAGE_ID", "MESSENGER_PAGE_TOKEN", "INSTAGRAM_ACCOUNT_ID",
                 "INSTAGRAM_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("CLINICQ_DEV_MODE", "false")
    monkeypatch.setenv("CLINICQ_INSECURE_DEV", "true")


@pytest.mark.parametrize(("values", "named"), [
    ({"MESSENGER_PAGE_ID": "1091"}, "MESSENGER_PAGE_TOKEN must be set"),
    ({"MESSENGER_PAGE_TOKEN": "tok"}, "MESSENGER_PAGE_ID must be set"),
    ({"INSTAGRAM_ACCOUNT_ID": "1784"}, "INSTAGRAM_TOKEN (or MESSENGER_PAGE_TOKEN) must be set"),
    ({"INSTAGRAM_TOKEN": "tok"}, "INSTAGRAM_ACCOUNT_ID must be set"),
])
def test_half_configured_meta_dm_stops_start_up_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, values: dict[str, str], named: str
) -> None:
    _env(monkeypatch, **values)
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert named in str(info.value)


def test_instagram_uses_the_page_token_unless_it_has_its_own() -> None:
    linked = Settings(INSTAGRAM_ACCOUNT_ID="1784", MESSENGER_PAGE_ID="1091",
                      MESSENGER_PAGE_TOKEN="page-token")
    assert MetaInstagramProvider(linked).token() == "page-token"
    own = linked.model_copy(update={"INSTAGRAM_TOKEN": "ig-token"})
    assert MetaInstagramProvider(own).token() == "ig-token"
    assert MetaInstagramProvider(own).session.headers["Authorization"] == "Bearer ig-token"
    assert channels.half_configured(linked) == []


@pytest.mark.parametrize(("hours_ago", "purpose", "allowed", "tag"), [
    (1, "auto_reply", True, None),
    (23.9, "reminder", True, None),
    (25, "reminder", False, None),
    (25, "agent_reply", True, HUMAN_AGENT_TAG),
    (24 * 6.9, "agent_reply", True, HUMAN_AGENT_TAG),
    (24 * 7.1, "agent_reply", False, None),
    (None, "agent_reply", False, None),
])
def test_messaging_windows(
    hours_ago: float | None, purpose: str, allowed: bool, tag: str | None
) -> None:
    last = None if hours_ago is None else NOW - timedelta(hours=hours_ago)
    decision = decide("messenger", last, purpose, Settings(), NOW)
    assert (decision.allowed, decision.tag) == (allowed, tag)
    assert (decision.reason is None) == allowed


def _provider(cls: type[MetaMessengerProvider] = MetaMessengerProvider) -> Any:
    return cls(Settings(MESSENGER_PAGE_ID="1091", MESSENGER_PAGE_TOKEN="tok",
                        INSTAGRAM_ACCOUNT_ID="1784"))


def test_send_api_body_inside_the_window_with_quick_replies() -> None:
    out = OutgoingMessage("mid-1", "messenger", "2401234", text="Lembrete",
                          quick_replies=[("Confirmar presença já", "CONFIRM_x")] * 15)
    body = _provider().payload(out)
    assert body["recipient"] == {"id": "2401234"} and body["messaging_type"] == "RESPONSE"
    assert "tag" not in body and body["message"]["metadata"] == "mid-1"
    replies = body["message"]["quick_replies"]
    assert len(replies) == 13  # Meta's maximum
    assert replies[0] == {"content_type": "text", "title": "Confirmar presença j",
                          "payload": "CONFIRM_x"}


def test_send_api_body_with_the_human_agent_tag_and_instagram_limits() -> None:
    out = OutgoingMessage("mid-1", "instagram", "1784555", text="é" * 900,
                          message_tag=HUMAN_AGENT_TAG, in_service_window=False)
    body = _provider(MetaInstagramProvider).payload(out)
    assert (body["messaging_type"], body["tag"]) == ("MESSAGE_TAG", "HUMAN_AGENT")
    assert len(body["message"]["text"].encode()) <= 1000  # never half a character
    assert body["message"]["text"] == "é" * 500
    assert "metadata" not in body["message"]
    with pytest.raises(PermanentError):
        _provider().payload(OutgoingMessage("mid-2", "messenger", "1", text=None))


def _response(status: int, error: dict[str, Any], headers: dict[str, str] | None = None) -> Any:
    response = requests.Response()
    response.status_code = status
    response._content = __import__("json").dumps({"error": error}).encode()
    response.headers.update(headers or {})
    return response


@pytest.mark.parametrize(("status", "code", "subcode", "kind", "recorded"), [
    (400, 10, 2018278, PermanentError, "10/2018278"),
    (400, 551, 1545041, PermanentError, "551"),
    (401, 190, None, PermanentError, "190"),
    (400, 100, 2018001, PermanentError, "100/2018001"),
    (400, 613, None, RetryableError, "613"),
    (400, 4, None, RetryableError, "4"),
    (500, 2, None, RetryableError, "2"),
    (500, 1200, None, RetryableError, "1200"),
])
def test_send_api_errors_are_classified(
    status: int, code: int, subcode: int | None, kind: type, recorded: str
) -> None:
    error = {"message": "x", "type": "OAuthException", "code": code, "fbtrace_id": "A1"}
    if subcode is not None:
        error["error_subcode"] = subcode
    classified = _provider()._classify(_response(status, error))
    assert isinstance(classified, kind) and classified.code == recorded
    if code in (4, 613):
        assert classified.retry_after == 30.0  # Meta gives no Retry-After


def test_meta_scoped_ids() -> None:
    assert normalize_psid(" 24012345678901234 ") == "24012345678901234"
    assert normalize_igsid(1784) == "1784"
    for bad in ("", "12a", "+5511999", "1" * 65):
        with pytest.raises(InvalidIdentifier):
            normalize_psid(bad)


def test_template_buttons_of_the_dm_reminders() -> None:
    for channel in ("messenger", "instagram"):
        assert template_buttons(channel, "lembrete_consulta") == [
            ("Confirmar", "CONFIRM_"), ("Remarcar", "RESCHEDULE_")]
        assert template_buttons(channel, "menu_opcoes") == []
        assert template_buttons(channel, "../whatsapp/x") == []


def test_clinicq_channels_and_the_banner_show_messenger_and_instagram() -> None:
    from shared.providers import channel_states, describe_channels

    dev = Settings(CLINICQ_DEV_MODE=True, MESSENGER_PAGE_ID="1091", MESSENGER_PAGE_TOKEN="tok")
    lines = describe_channels(dev)
    assert "messenger: live via meta_messenger" in lines
    assert ("instagram: OUTBOX (dev mode, not sent anywhere; set INSTAGRAM_ACCOUNT_ID "
            "for meta_instagram)") in lines
    prod = Settings(CLINICQ_DEV_MODE=False)
    assert channel_states(prod)["messenger"] == {
        "state": "unconfigured", "missing": ["MESSENGER_PAGE_ID", "MESSENGER_PAGE_TOKEN"]}
    linked = dev.model_copy(update={"INSTAGRAM_ACCOUNT_ID": "1784"})
    assert channel_states(linked)["instagram"] == {"state": "live", "provider": "meta_instagram"}
