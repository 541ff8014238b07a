"""Filing website-widget messages on real PostgreSQL: Rocket.Chat's webhook
shows the bridge's own posts of patients' messages as visitor messages too;
those are recognised by the room the bridge recorded and not filed again,
while a widget room's messages are filed (the first and the next ones)."""

from __future__ import annotations

import uuid

from sqlalchemy import func, select

from shared.core.db import session_scope
from shared.core.models import Contact, Conversation, Message
from shared.inbound.filing import file_inbound_message
from shared.inbox.webchat import rocketchat_visitor_messages
from tests.integration.test_webhook_contract import rocketchat_visitor_message


def visitor_payload(room: str, message_id: str) -> dict:
    doc = rocketchat_visitor_message(message_id)
    doc["_id"] = room
    (payload,) = rocketchat_visitor_messages(doc, 4000)
    return payload


def count_webchat() -> int:
    with session_scope() as s:
        return int(s.scalar(select(func.count()).select_from(Message)
                            .where(Message.channel == "webchat")) or 0)


def test_bridge_room_echo_is_not_filed_widget_room_is() -> None:
    with session_scope() as s:  # a patient's conversation, bridged to room "bridged1"
        contact = Contact(name="Ana")
        s.add(contact)
        s.flush()
        s.add(Conversation(contact_id=contact.id, channel="whatsapp", status="active",
                           inbox_provider="rocketchat", inbox_conversation_id="bridged1"))
    with session_scope() as s:
        assert file_inbound_message(s, str(uuid.uuid4()),
                                    visitor_payload("bridged1", "echo1")) is None
    assert count_webchat() == 0

    for n in (1, 2):  # a widget room: its first message, then the next one
        with session_scope() as s:
            filed = file_inbound_message(s, str(uuid.uuid4()),
                                         visitor_payload("widgetRoom7", f"w{n}"))
            assert filed is not None
    assert count_webchat() == 2
    with session_scope() as s:
        (conversation,) = s.scalars(select(Conversation).where(
            Conversation.inbox_conversation_id == "widgetRoom7")).all()
        assert conversation.channel == "webchat"
