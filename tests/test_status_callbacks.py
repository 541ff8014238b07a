"""Provider status updates: forward-only, deduped, every update in message_events,
cost recorded; and the Twilio status-callback endpoint in front of it."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

from sqlalchemy import select

from shared.db import session_scope
from shared.models import Contact, Message, MessageEvent, OptOut
from shared.status_updates import apply_status_update
from tests.conftest import wait_for


def make_sent_message(
    provider: str = "twilio_sms", channel: str = "sms", provider_id: str | None = None
) -> tuple[uuid.UUID, str]:
    provider_id = provider_id or f"SM{uuid.uuid4().hex}"
    mid = uuid.uuid4()
    with session_scope() as s:
        contact = Contact(name="Maria")
        s.add(contact)
        s.flush()
        s.add(
            Message(
                id=mid,
                contact_id=contact.id,
                channel=channel,
                direction="outbound",
                to_address="+5511999999999",
                text="oi",
                status="sent",
                provider=provider,
                provider_message_id=provider_id,
            )
        )
    return mid, provider_id


def update(provider_id: str, status: str, **extra: Any) -> dict[str, Any]:
    doc = {
        "provider": "twilio",
        "provider_message_id": provider_id,
        "our_message_id": None,
        "status": status,
        "error_code": None,
        "error_message": None,
        "price": None,
        "price_currency": None,
        "pricing": None,
        "timestamp": None,
        "event_id": f"{provider_id}:{status}",
        "raw": {"MessageSid": provider_id, "MessageStatus": status},
    }
    doc.update(extra)
    return doc


def status_of(mid: uuid.UUID) -> Message:
    with session_scope() as s:
        msg = s.get(Message, mid)
        assert msg is not None
        s.expunge(msg)
        return msg


def events_of(mid: uuid.UUID) -> list[MessageEvent]:
    with session_scope() as s:
        rows = s.scalars(
            select(MessageEvent).where(MessageEvent.message_id == mid).order_by(MessageEvent.id)
        ).all()
        for r in rows:
            s.expunge(r)
        return list(rows)


def apply(doc: dict[str, Any]) -> bool:
    with session_scope() as s:
        return apply_status_update(s, doc)


def test_status_moves_forward_only_and_late_sent_changes_nothing() -> None:
    mid, sid = make_sent_message()
    assert apply(update(sid, "delivered")) is True
    assert status_of(mid).status == "delivered"
    assert apply(update(sid, "sent")) is False  # late, out of order
    msg = status_of(mid)
    assert msg.status == "delivered" and msg.delivered_at is not None
    kinds = [(e.event, e.status_to) for e in events_of(mid)]
    assert kinds == [("twilio_status", "delivered"), ("twilio_status_ignored", None)]
    assert events_of(mid)[0].payload == {"MessageSid": sid, "MessageStatus": "delivered"}


def test_duplicate_event_changes_nothing() -> None:
    mid, sid = make_sent_message()
    assert apply(update(sid, "delivered")) is True
    assert apply(update(sid, "delivered")) is False
    assert len(events_of(mid)) == 1


def test_failed_after_sent_records_code_and_21610_records_opt_out() -> None:
    mid, sid = make_sent_message()
    apply(update(sid, "undelivered", error_code="21610", error_message="opted out"))
    msg = status_of(mid)
    assert (msg.status, msg.error_code) == ("failed", "21610")
    with session_scope() as s:
        assert s.scalar(select(OptOut.channel).where(OptOut.contact_id == msg.contact_id)) == "sms"


def test_unknown_message_is_ignored() -> None:
    assert apply(update("SMnotours", "delivered")) is False


def test_twilio_price_and_meta_pricing_recorded_as_cost() -> None:
    mid, sid = make_sent_message()
    apply(update(sid, "delivered", price="-0.0075", price_currency="USD"))
    msg = status_of(mid)
    assert (msg.cost, msg.cost_currency) == (Decimal("0.0075"), "USD")

    wamid = f"wamid.{uuid.uuid4().hex}"
    mid2, _ = make_sent_message("meta_whatsapp", "whatsapp", wamid)
    meta = update(wamid, "delivered", provider="meta", our_message_id=str(mid2),
                  pricing={"billable": False, "pricing_model": "PMP", "category": "service"})
    assert apply(meta) is True
    assert status_of(mid2).cost == Decimal("0")
    meta2 = update(wamid, "read", provider="meta", our_message_id=str(mid2),
                   pricing={"billable": True, "pricing_model": "PMP", "category": "marketing"})
    apply(meta2)
    msg2 = status_of(mid2)
    assert (msg2.status, msg2.cost, msg2.cost_currency) == ("read", Decimal("0.0500"), "BRL")


def test_our_id_echo_must_match_the_provider_id() -> None:
    mid, sid = make_sent_message("meta_whatsapp", "whatsapp", "wamid.A")
    forged = update("wamid.B", "read", provider="meta", our_message_id=str(mid))
    assert apply(forged) is False
    assert status_of(mid).status == "sent"


def test_status_update_task_runs_on_a_real_worker(celery_worker: Any) -> None:
    from workers.app import app

    mid, sid = make_sent_message()
    celery_worker(queues="inbound", concurrency=1)
    app.send_task("clinicq.inbound.status_update", args=[update(sid, "delivered")])
    app.send_task("clinicq.inbound.status_update", args=[update(sid, "delivered")])
    wait_for(lambda: status_of(mid).status == "delivered", timeout=30)
    wait_for(lambda: len(events_of(mid)) >= 1)
    import time

    time.sleep(0.5)
    assert len(events_of(mid)) == 1
