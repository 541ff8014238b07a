"""Web chat: visitors writing in the agent inbox's own website widget
(a Chatwoot *website* inbox, `Channel::WebWidget`; a Rocket.Chat Livechat
room opened by the Livechat widget), filed as channel `webchat`.

The messages reach clinicq through the inbox webhooks it already
authenticates (ingest/webhooks/inbox.py). This module:
- turns a visitor's message in a webhook body into clinicq's inbound payload
  (pure: `chatwoot_widget_message`, `rocketchat_visitor_messages`);
- posts clinicq's own answers to a visitor (the safety reply of an urgent
  message) into the widget conversation, where the visitor reads them
  (`post_widget_reply`, task clinicq.inbox.widget_reply).

What it does NOT do, on purpose:
- post the visitor's message back into the inbox (it is there already: the
  inbox bridge skips channel `webchat`, shared/inbox/sync.py);
- send an agent's answer anywhere (the visitor sees it in the widget; the
  bridge's agent-reply flow files it and sends nothing);
- trust what a visitor typed. The widget is a public page: the visitor's
  identity is the inbox's id for them (IdentityKind `webchat`, value
  `<inbox>:<visitor id>`: Chatwoot's contact id, Rocket.Chat's visitor
  `_id` — never the Livechat visitor token, a credential), and an e-mail or
  phone they typed into the pre-chat form is a claim: never verified, never
  attached to another contact (a merge candidate instead; see
  shared/contacts/directory.py, the `webchat` anchor).

A kind of its own rather than `chatwoot`/`rocketchat`: those hold the
contacts the bridge created for our patients (verified, ours); Chatwoot
merges a widget contact into an existing one by e-mail, so sharing the kind
would file a stranger's words under a patient.
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, update

from shared.core.config import Settings, get_settings
from shared.core.db import session_scope
from shared.core.enums import Channel, Direction, IdentityKind, MessageStatus
from shared.core.identity import InvalidIdentifier, normalize_email, normalize_phone
from shared.core.models import Message, MessageEvent, ProcessedEvent
from shared.core.validation import (
    id_field,
    list_field,
    object_field,
    repair_inbound_payload,
    repair_text,
)
from shared.inbox import bridge_for
from shared.inbox.base import CONVERSATION_ID_MAX, EVENT_ID_MAX, InboxRejected

log = logging.getLogger(__name__)

CHATWOOT_WIDGET = "Channel::WebWidget"
_INCOMING = ("incoming", 0)
NAME_MAX = 200


def visitor_identity(inbox: str, visitor_id: str) -> str:
    """The `webchat` identity value of a widget visitor."""
    return f"{inbox}:{visitor_id}"


def _typed(value: Any, normalize: Any) -> str | None:
    """What the visitor typed, normalized; dropped when it is not valid."""
    if isinstance(value, list):  # Rocket.Chat: [{"address": …}] / [{"phoneNumber": …}]
        value = next(
            (v.get("address") or v.get("phoneNumber") for v in value if isinstance(v, dict)),
            None,
        )
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        return str(normalize(value))
    except InvalidIdentifier:
        return None


def _payload(
    inbox: str,
    visitor_id: str,
    remote_conversation: str,
    message_id: str,
    text: str,
    person: dict[str, Any],
    received_at: str,
    max_chars: int,
) -> dict[str, Any]:
    contact: dict[str, Any] = {IdentityKind.WEBCHAT.value: visitor_identity(inbox, visitor_id)}
    name = person.get("name")
    if isinstance(name, str) and name.strip():
        contact["name"] = " ".join(repair_text(name).split())[:NAME_MAX]
    email = _typed(person.get("email"), normalize_email)
    phone = _typed(person.get("phone_number", person.get("phone")), normalize_phone)
    if email:
        contact["email"] = email
    if phone:
        contact["phone"] = phone
    return repair_inbound_payload({
        "type": "message",
        "channel": Channel.WEBCHAT.value,
        "contact": contact,
        "message": {
            "text": text[:max_chars],
            "timestamp": None,
            "metadata": {"inbox": inbox, "inbox_conversation_id": remote_conversation},
        },
        "received_at": received_at,
        "source": f"{inbox}-widget",
        # Nothing is attested: the widget is public, the visitor unverified.
        "attested": [],
        "provider": inbox,
        "provider_message_id": message_id,
        "idempotency_key": f"{inbox}:widget:{message_id}",
    })


def chatwoot_widget_message(
    doc: dict[str, Any], max_chars: int, now: datetime | None = None
) -> dict[str, Any] | None:
    """A visitor's message in a Chatwoot website inbox → inbound payload
    (None for anything else: agents' messages, our own API inbox's echoes,
    notes, activity). A field of the wrong type is a PayloadError (→ 400)."""
    if doc.get("event") != "message_created" or doc.get("private"):
        return None
    if doc.get("message_type") not in _INCOMING:
        return None
    conversation = object_field(doc, "conversation")
    if conversation.get("channel") != CHATWOOT_WIDGET:
        return None  # the API inbox: the patient messages clinicq posted itself
    sender = object_field(doc, "sender")
    if sender.get("type") not in (None, "contact") or "id" not in doc:
        return None
    visitor = sender.get("id")
    if visitor is None:
        visitor = object_field(conversation, "contact_inbox", "conversation.contact_inbox").get(
            "contact_id")
    if visitor is None:
        return None
    content = doc.get("content")
    text = repair_text(content).strip() if isinstance(content, str) else ""
    attachments = doc.get("attachments")
    if not text and isinstance(attachments, list) and attachments:
        text = "(anexo enviado pelo chat do site)"
    if not text:
        return None
    remote = conversation.get("display_id") or conversation.get("id")
    if remote is None:
        return None
    return _payload(
        "chatwoot",
        id_field(visitor, "sender.id", 64),
        id_field(remote, "conversation.display_id", CONVERSATION_ID_MAX),
        id_field(doc["id"], "id", EVENT_ID_MAX),
        text,
        sender,
        (now or datetime.now(UTC)).isoformat(),
        max_chars,
    )


def rocketchat_visitor_messages(
    doc: dict[str, Any], max_chars: int, now: datetime | None = None
) -> list[dict[str, Any]]:
    """The visitor's messages in an Omnichannel "Message" webhook → inbound
    payloads. Rocket.Chat marks them by the visitor as author (`u._id` is
    the visitor's `_id`, or `token` on the raw message) and no `agentId`.
    Whether the room is a widget's or one the bridge opened for a patient
    (whose posts come back here too) is decided by the inbound worker, which
    knows the bridge's rooms (shared/inbound/filing.py)."""
    if doc.get("type") != "Message":
        return []
    room = doc.get("_id")
    if not isinstance(room, str) or not room:
        return []
    room = id_field(room, "_id", CONVERSATION_ID_MAX)
    visitor = object_field(doc, "visitor")
    visitor_id = visitor.get("_id")
    if not isinstance(visitor_id, str) or not visitor_id:
        return []
    payloads = []
    stamp = (now or datetime.now(UTC)).isoformat()
    for n, message in enumerate(list_field(doc, "messages")):
        if not isinstance(message, dict) or message.get("t") or message.get("agentId"):
            continue
        user = object_field(message, "u", f"messages.{n}.u")
        by_visitor = bool(message.get("token")) or user.get("_id") == visitor_id or (
            not user and message.get("username") == visitor.get("username"))
        text = message.get("msg")
        text = repair_text(text).strip() if isinstance(text, str) else ""
        if not by_visitor or not text or "_id" not in message:
            continue
        payloads.append(_payload(
            "rocketchat",
            id_field(visitor_id, "visitor._id", 64),
            room,
            id_field(message["_id"], f"messages.{n}._id", EVENT_ID_MAX),
            text,
            visitor,
            stamp,
            max_chars,
        ))
    return payloads


# --- clinicq's own answers, into the widget conversation ---------------------------------


def post_widget_reply(message_id: str, settings: Settings | None = None) -> str:
    """Post an outbound `webchat` message (made by the automations, status
    queued, `to_address` = the widget conversation, `provider` = the inbox)
    into the widget conversation, once: claimed queued → sending first, so a
    redelivered task does not post twice; marked sent with the inbox's id for
    it, which is also recorded as processed so the inbox's webhook echo of
    our own post is not taken for an agent's reply."""
    settings = settings or get_settings()
    mid = uuid.UUID(message_id)
    with session_scope() as session:
        claimed = session.execute(
            update(Message)
            .where(
                Message.id == mid,
                Message.channel == Channel.WEBCHAT.value,
                Message.direction == Direction.OUTBOUND.value,
                Message.status == MessageStatus.QUEUED.value,
            )
            .values(status=MessageStatus.SENDING.value, updated_at=datetime.now(UTC))
            .returning(Message.provider, Message.to_address, Message.text)
        ).first()
    if claimed is None:
        return "not queued"
    bridge = bridge_for(settings, claimed.provider)
    if bridge is None:
        _finish(mid, MessageStatus.FAILED, None, "inbox_not_configured")
        return "inbox disabled"
    try:
        remote_id = bridge.post_widget_message(str(claimed.to_address), claimed.text or "")
    except InboxRejected as exc:  # the same request would be refused again
        _finish(mid, MessageStatus.FAILED, None, f"inbox_http_{exc.status}")
        return "rejected"
    except Exception:
        # Back to queued, so the retried task (InboxUnavailable) claims it again.
        with session_scope() as session:
            session.execute(
                update(Message).where(Message.id == mid,
                                      Message.status == MessageStatus.SENDING.value)
                .values(status=MessageStatus.QUEUED.value)
            )
        raise
    _finish(mid, MessageStatus.SENT, remote_id, None, echo=(bridge.name, remote_id))
    return "posted"


def _finish(mid: uuid.UUID, status: MessageStatus, remote_id: str | None,
            reason: str | None, echo: tuple[str, str | None] | None = None) -> None:
    with session_scope() as session:
        session.execute(
            update(Message).where(Message.id == mid)
            .values(status=status.value, provider_message_id=remote_id,
                    error_code=reason, updated_at=datetime.now(UTC))
        )
        session.add(MessageEvent(message_id=mid, event=status.value, status_to=status.value,
                                 detail=reason))
        if echo is not None and echo[1]:
            exists = session.scalar(select(ProcessedEvent.event_id).where(
                ProcessedEvent.source == f"{echo[0]}:message",
                ProcessedEvent.event_id == echo[1]))
            if exists is None:
                session.add(ProcessedEvent(source=f"{echo[0]}:message", event_id=echo[1]))
