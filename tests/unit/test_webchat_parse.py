"""Which inbox webhook bodies are website-widget visitors' messages
(shared/inbox/webchat.py), and what the inbound payload holds."""

from __future__ import annotations

import copy

import pytest

from shared.core.validation import PayloadError
from shared.inbox.chatwoot import parse_chatwoot_webhook
from shared.inbox.rocketchat import parse_rocketchat_webhook
from shared.inbox.webchat import chatwoot_widget_message, rocketchat_visitor_messages
from tests.integration.test_webhook_contract import (
    chatwoot_message,
    rocketchat_message,
    rocketchat_visitor_message,
)
from tests.integration.test_webhook_contract import (
    chatwoot_widget_message as cw_widget_body,
)


def test_chatwoot_visitor_message() -> None:
    payload = chatwoot_widget_message(cw_widget_body(9001, "dor no peito forte agora"), 4000)
    assert payload is not None
    assert payload["channel"] == "webchat" and payload["attested"] == []
    assert payload["contact"] == {"webchat": "chatwoot:77", "name": "Visitante",
                                  "email": "visitante@example.com"}
    assert payload["message"]["text"] == "dor no peito forte agora"
    assert (payload["provider"], payload["provider_message_id"]) == ("chatwoot", "9001")
    assert payload["idempotency_key"] == "chatwoot:widget:9001"


@pytest.mark.parametrize(
    "change",
    [
        {"message_type": "outgoing"},  # an agent
        {"private": True},  # a note
        {"message_type": "activity"},
        {"event": "conversation_created"},
        {"content": "   "},
    ],
)
def test_chatwoot_not_a_visitor_message(change: dict) -> None:
    body = {**cw_widget_body(1), **change}
    assert chatwoot_widget_message(body, 4000) is None


def test_chatwoot_api_inbox_echo_is_not_webchat() -> None:
    """clinicq's own posts of patients' messages come back as `incoming` in the API inbox."""
    body = chatwoot_message(2)
    body["message_type"] = "incoming"
    assert chatwoot_widget_message(body, 4000) is None


def test_chatwoot_typed_values_are_normalized_or_dropped() -> None:
    body = cw_widget_body(3)
    body["sender"] = {**body["sender"], "email": "not an email", "phone_number": "(11) 98765-4321"}
    payload = chatwoot_widget_message(body, 4000)
    assert payload is not None
    assert payload["contact"] == {"webchat": "chatwoot:77", "name": "Visitante",
                                  "phone": "+5511987654321"}


def test_chatwoot_wrong_type_names_the_field() -> None:
    body = cw_widget_body(4)
    body["sender"] = ["x"]
    with pytest.raises(PayloadError) as exc:
        chatwoot_widget_message(body, 4000)
    assert exc.value.field == "sender"


def test_chatwoot_agent_reply_in_widget_is_flagged() -> None:
    body = copy.deepcopy(chatwoot_message(5))
    assert parse_chatwoot_webhook(body)[0].widget is False
    body["conversation"]["channel"] = "Channel::WebWidget"
    assert parse_chatwoot_webhook(body)[0].widget is True


def test_rocketchat_visitor_message() -> None:
    (payload,) = rocketchat_visitor_messages(rocketchat_visitor_message("vm1"), 4000)
    assert payload["contact"] == {"webchat": "rocketchat:63db8d4990fe6eda42ad429a",
                                  "name": "James", "email": "james@example.com"}
    assert payload["message"]["metadata"] == {"inbox": "rocketchat",
                                              "inbox_conversation_id": "widgetRoom1"}
    # The same body holds no agent message for the bridge.
    assert parse_rocketchat_webhook(rocketchat_visitor_message("vm1"), "bot") == []


def test_rocketchat_agent_and_system_messages_are_not_visitors() -> None:
    assert rocketchat_visitor_messages(rocketchat_message("am1"), 4000) == []
    body = rocketchat_visitor_message("vm2")
    body["messages"][0]["t"] = "livechat-close"
    assert rocketchat_visitor_messages(body, 4000) == []
    body = rocketchat_visitor_message("vm3")
    body["type"] = "LivechatSession"
    assert rocketchat_visitor_messages(body, 4000) == []


def test_text_is_cut_to_the_message_limit() -> None:
    payload = chatwoot_widget_message(cw_widget_body(6, "a" * 50), 10)
    assert payload is not None and payload["message"]["text"] == "a" * 10
