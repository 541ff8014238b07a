"""Filing an inbound message: contact → conversation → message → event.

Called by the `inbound` worker with the payload ingest validated. The
message is filed under the contact its identities name; whether the channel
vouched that the sender *is* that contact is kept on the message
(`sender_verified`, see shared/contacts/directory.py) for the handlers that act. One
transaction; running it twice changes nothing (the message id was made at
ingest and is the primary key; the idempotency key is unique too).
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from shared.contacts.admin import merge_attested_duplicates
from shared.contacts.conversations import (
    active_conversation,
    inbox_conversation,
    is_widget_conversation,
    refresh_last_inbound_triage,
)
from shared.contacts.directory import contact_details_from_payload, find_or_create_contact
from shared.core.enums import Channel, Direction, MessageStatus
from shared.core.errors import ClinicqError
from shared.core.models import Conversation, Message, MessageEvent

log = logging.getLogger(__name__)


@dataclass
class FiledMessage:
    message_id: uuid.UUID
    contact_id: uuid.UUID
    conversation_id: uuid.UUID
    created: bool  # False: it was already filed (redelivery), nothing changed
    contact_created: bool = False


def _parse_ts(value: Any) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(str(value))
    except ValueError:
        return None


def file_inbound_message(
    session: Session, message_id: str, payload: dict[str, Any]
) -> FiledMessage | None:
    """Persist one inbound message. Returns None for a duplicate delivery."""
    mid = uuid.UUID(message_id)
    idem = payload.get("idempotency_key")
    provider = payload.get("provider")
    provider_message_id = payload.get("provider_message_id")

    # Redelivery of a task already filed: change nothing.
    dup = session.scalar(select(Message.id).where(Message.id == mid))
    if dup is None and idem:
        dup = session.scalar(select(Message.id).where(Message.idempotency_key == idem))
    if dup is None and provider and provider_message_id:
        dup = session.scalar(
            select(Message.id).where(
                Message.provider == provider, Message.provider_message_id == provider_message_id
            )
        )
    if dup is not None:
        return None

    channel = payload["channel"]
    msg = payload["message"]
    received_at = _parse_ts(payload.get("received_at")) or datetime.now(UTC)
    widget = _widget_link(payload) if channel == Channel.WEBCHAT.value else None
    if widget is not None and _bridge_echo(session, *widget):
        log.info("patient message posted by the inbox bridge came back; not filed again",
                 extra={"message_id": message_id, "inbox": widget[0]})
        return None

    details = contact_details_from_payload(
        payload["contact"], channel, payload.get("source", ""), payload.get("attested")
    )
    match = find_or_create_contact(session, details)
    if match.merge_candidates:
        # A provider that vouched for every identity of the message (a
        # Telegram chat sharing its own phone) joins the chat to the patient.
        merged = merge_attested_duplicates(
            session,
            match.contact_id,
            [c for c in match.merge_candidates if c != match.held_apart],
            details.verified if set(details.verified) == set(details.identities) else {},
        )
        match.merge_candidates = [c for c in match.merge_candidates if c not in merged]
    conversation_id = active_conversation(session, match.contact_id, channel, received_at)
    if widget is not None:
        # The widget conversation is this conversation's place in the inbox:
        # agents' replies there find it (and are not sent anywhere else).
        session.execute(
            update(Conversation)
            .where(Conversation.id == conversation_id)
            .values(inbox_provider=widget[0], inbox_conversation_id=widget[1])
        )

    inserted = session.scalar(
        insert(Message)
        .values(
            id=mid,
            conversation_id=conversation_id,
            contact_id=match.contact_id,
            channel=channel,
            direction=Direction.INBOUND.value,
            purpose="patient",
            text=msg.get("text"),
            subject=msg.get("subject"),
            metadata_=msg.get("metadata"),
            status=MessageStatus.RECEIVED.value,
            provider=provider,
            provider_message_id=provider_message_id,
            idempotency_key=idem,
            sent_at_provider=_parse_ts(msg.get("timestamp")),
            sender_verified=match.sender_verified,
            created_at=received_at,
            updated_at=received_at,
        )
        .on_conflict_do_nothing()
        .returning(Message.id)
    )
    if inserted is None:
        # Lost a race with a concurrent copy: undo our contact/conversation
        # touches by raising to the caller's rollback.
        raise DuplicateDelivery(message_id)
    # The conversation's last inbound message is this one, not triaged yet.
    refresh_last_inbound_triage(session, [conversation_id])

    event_payload = {
        "source": payload.get("source"),
        "auth": payload.get("auth"),
        "warnings": payload.get("warnings") or None,
        "merge_candidates": [str(c) for c in match.merge_candidates] or None,
        "sender_verified": match.sender_verified,
        "sender_verified_via": sorted(set(details.verified.values())) or None,
        "held_apart": str(match.held_apart) if match.held_apart else None,
    }
    if payload.get("raw") is not None:
        event_payload["raw"] = payload["raw"]
    session.add(
        MessageEvent(
            message_id=mid,
            event="received",
            status_to=MessageStatus.RECEIVED.value,
            payload={k: v for k, v in event_payload.items() if v is not None},
        )
    )
    if match.merge_candidates:
        log.info(
            "identities matched several contacts; merge candidate recorded",
            extra={"message_id": message_id, "count": len(match.merge_candidates) + 1},
        )
    return FiledMessage(
        message_id=mid,
        contact_id=match.contact_id,
        conversation_id=conversation_id,
        created=True,
        contact_created=match.created,
    )


def _widget_link(payload: dict[str, Any]) -> tuple[str, str] | None:
    """(inbox, widget conversation id) of a `webchat` message."""
    meta = (payload.get("message") or {}).get("metadata") or {}
    inbox, remote = meta.get("inbox"), meta.get("inbox_conversation_id")
    if isinstance(inbox, str) and isinstance(remote, str) and inbox and remote:
        return inbox, remote
    return None


def _bridge_echo(session: Session, inbox: str, remote: str) -> bool:
    """A visitor message in a conversation the inbox bridge opened itself is
    our own post of a patient's message coming back (Rocket.Chat's webhook
    cannot tell a widget room from one opened through the Livechat API)."""
    conversation = inbox_conversation(session, inbox, remote)
    return conversation is not None and not is_widget_conversation(
        session, conversation.id, inbox, remote
    )


class DuplicateDelivery(ClinicqError):
    """A concurrent copy of the same message was filed first."""
