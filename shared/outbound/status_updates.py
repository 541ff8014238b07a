"""Provider status updates (Twilio status callbacks, Meta `statuses[]`).

Contract (task `clinicq.inbound.status_update`, one dict argument):

    {"provider": vendor, "provider_message_id": str,
     "our_message_id": str | None, "status": raw provider status,
     "error_code": str | None, "error_message": str | None,
     "price": str | None, "price_currency": str | None, "pricing": dict | None,
     "timestamp": iso str | None, "event_id": str (dedupe key), "raw": dict}

`provider` is the vendor ("twilio", "meta": its package under
shared/providers/). What its statuses mean, which providers' messages it may
touch (the `provider` column holds a provider's name, e.g. `twilio_sms`) and
which error codes say the recipient opted out are the vendor's providers'
declarations, read through the registry: nothing here names a vendor.

Rules (ARCHITECTURE rule 5): statuses only move forward (STATUS_RANK), a
duplicate delivery (same `event_id`) changes nothing, and every accepted update
is appended to `message_events` with the raw payload — even a stale one, so the
history shows what the provider said and when.
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from shared.contacts.optouts import record_opt_out
from shared.core.config import get_settings
from shared.core.enums import STATUS_RANK, MessageStatus
from shared.core.models import ContactIdentity, Message, MessageEvent, ProcessedEvent
from shared.core.webhook_events import record_message_event
from shared.outbound.cost import reported_cost
from shared.providers import VendorDeclarations, vendor_declarations

log = logging.getLogger(__name__)

# Statuses a callback never changes: we decided not to send.
_NOT_SENT = {MessageStatus.SKIPPED.value, MessageStatus.CANCELLED.value}

_TIMESTAMP_COLUMN = {
    MessageStatus.SENT: "sent_at",
    MessageStatus.DELIVERED: "delivered_at",
    MessageStatus.READ: "read_at",
}


def _parse_ts(value: Any) -> datetime:
    if isinstance(value, str) and value:
        try:
            ts = datetime.fromisoformat(value.replace("Z", "+00:00"))
            return ts if ts.tzinfo else ts.replace(tzinfo=UTC)
        except ValueError:
            pass
    return datetime.now(UTC)


def _find_message(
    session: Session, update_: dict[str, Any], vendor: VendorDeclarations
) -> Message | None:
    provider_id = update_.get("provider_message_id")
    our_id = update_.get("our_message_id")
    if our_id:
        try:
            message = session.get(Message, uuid.UUID(str(our_id)), with_for_update=True)
        except ValueError:
            message = None
        # Our id echoed back must agree with the provider id we recorded; a
        # mismatch is someone else's message (or a forged echo): ignore it.
        if message is not None and (
            message.provider_message_id in (None, provider_id)
            and (message.provider is None or message.provider in vendor.providers)
        ):
            return message
    if provider_id:
        return session.scalars(
            select(Message)
            .where(
                Message.provider_message_id == provider_id,
                Message.provider.in_(vendor.providers),
            )
            .with_for_update()
        ).first()
    return None


def apply_status_update(session: Session, update_: dict[str, Any]) -> bool:
    """Apply one provider status update. Returns True if the message's status moved.

    Unknown messages and duplicate events are ignored (False); the caller's
    transaction commits the dedupe record together with the change.
    """
    provider = update_.get("provider")
    vendor = vendor_declarations(provider) if isinstance(provider, str) else None
    # A vendor without a status vocabulary sends no status updates.
    if vendor is None or not vendor.status_map:
        log.warning("status update from unknown provider ignored", extra={"provider": provider})
        return False
    raw_status = str(update_.get("status") or "").lower()
    new_status = vendor.status_map.get(raw_status)
    if update_.get("watermark") and not update_.get("provider_message_id"):
        return _apply_watermark(session, update_, vendor, raw_status, new_status)

    message = _find_message(session, update_, vendor)
    if message is None:
        log.info(
            "status update for unknown message ignored",
            extra={"provider": provider, "status": raw_status},
        )
        return False

    event_id = str(update_.get("event_id") or "")[:255]
    if not event_id:
        event_id = f"{update_.get('provider_message_id')}:{raw_status}"
    fresh = session.scalar(
        insert(ProcessedEvent)
        .values(source=f"{provider}-status", event_id=event_id)
        .on_conflict_do_nothing()
        .returning(ProcessedEvent.event_id)
    )
    if fresh is None:
        return False

    settings = get_settings()
    values: dict[str, Any] = {}
    moved = False
    current = message.status
    if (
        new_status is not None
        and current not in _NOT_SENT
        and current in STATUS_RANK
        and STATUS_RANK[new_status] > STATUS_RANK[MessageStatus(current)]
    ):
        moved = True
        values["status"] = new_status.value
        column = _TIMESTAMP_COLUMN.get(new_status)
        if column and getattr(message, column) is None:
            values[column] = _parse_ts(update_.get("timestamp"))
        if new_status is MessageStatus.FAILED:
            code = update_.get("error_code")
            values["error_code"] = str(code)[:32] if code else None
            values["status_reason"] = (update_.get("error_message") or raw_status)[:1000]
    # A message whose send outcome we never learned (crash, timeout) gets the
    # provider id from the callback that names our id.
    if message.provider_message_id is None and update_.get("provider_message_id"):
        values["provider_message_id"] = str(update_["provider_message_id"])[:128]

    cost = reported_cost(
        settings,
        message.channel,
        update_.get("price"),
        update_.get("price_currency"),
        update_.get("pricing"),
    )
    if cost is not None:
        values["cost"], values["cost_currency"] = cost
        # Meta reports only billable/not: an amount then is still our estimate.
        values["cost_estimated"] = update_.get("price") in (None, "") and cost[0] != 0

    if values:
        values["updated_at"] = datetime.now(UTC)
        session.execute(update(Message).where(Message.id == message.id).values(**values))
    if moved and new_status is MessageStatus.FAILED:
        record_message_event(session, message.id, "message.failed")
    elif moved and new_status in (MessageStatus.DELIVERED, MessageStatus.READ):
        # Read implies delivered (a `delivered` callback may never come);
        # one event per message whichever arrives first.
        record_message_event(session, message.id, "message.delivered")
    session.add(
        MessageEvent(
            message_id=message.id,
            event=f"{provider}_status" if moved else f"{provider}_status_ignored",
            status_from=current,
            status_to=values.get("status"),
            detail=raw_status if moved else f"{raw_status} (no forward move from {current})",
            payload=update_.get("raw") or {},
        )
    )
    code = str(update_.get("error_code") or "")
    if code in vendor.opted_out_codes and message.contact_id is not None:
        record_opt_out(session, message.contact_id, message.channel, None, f"{provider}:{code}")
    return moved


# Our `sent_at` is taken just after the provider accepted a message, the
# provider's watermark on its own clock: a message delivered within this
# long of being accepted still counts as before the watermark.
WATERMARK_SLACK = timedelta(seconds=2)


def _apply_watermark(
    session: Session,
    update_: dict[str, Any],
    vendor: VendorDeclarations,
    raw_status: str,
    new_status: MessageStatus | None,
) -> bool:
    """Messenger's `delivery` / `read` watermark: every message we sent to
    this person on this channel up to the watermark has that status. The
    person is found by their identity (`recipient` = a PSID / IGSID of the
    channel's address kind), their messages by contact (indexed). Each
    message moved gets its own event; statuses only move forward."""
    from shared.core.channels import address_kind, is_channel

    channel = str(update_.get("channel") or "")
    recipient = str(update_.get("recipient") or "")
    if new_status is None or not is_channel(channel) or not recipient:
        return False
    event_id = str(update_.get("event_id") or "")[:255]
    fresh = session.scalar(
        insert(ProcessedEvent)
        .values(source=f"{update_.get('provider')}-status", event_id=event_id)
        .on_conflict_do_nothing()
        .returning(ProcessedEvent.event_id)
    )
    if fresh is None or not event_id:
        return False
    contact_ids = select(ContactIdentity.contact_id).where(
        ContactIdentity.kind == address_kind(channel), ContactIdentity.value == recipient
    )
    watermark = _parse_ts(update_.get("watermark"))
    # Sent and on their way (not failed, not yet at this status).
    earlier = [status.value for status, rank in STATUS_RANK.items()
               if STATUS_RANK[MessageStatus.SENT] <= rank < STATUS_RANK[new_status]]
    rows = session.scalars(
        select(Message)
        .where(
            Message.contact_id.in_(contact_ids),
            Message.channel == channel,
            Message.to_address == recipient,
            Message.provider.in_(vendor.providers),
            Message.status.in_(earlier),
            Message.sent_at <= watermark + WATERMARK_SLACK,
        )
        .order_by(Message.sent_at)
        .limit(500)
        .with_for_update()
    ).all()
    column = _TIMESTAMP_COLUMN.get(new_status)
    for message in rows:
        values: dict[str, Any] = {"status": new_status.value, "updated_at": datetime.now(UTC)}
        if column and getattr(message, column) is None:
            values[column] = watermark
        session.execute(update(Message).where(Message.id == message.id).values(**values))
        session.add(
            MessageEvent(
                message_id=message.id,
                event=f"{update_.get('provider')}_status",
                status_from=message.status,
                status_to=new_status.value,
                detail=f"{raw_status} (watermark)",
                payload=update_.get("raw") or {},
            )
        )
    return bool(rows)
