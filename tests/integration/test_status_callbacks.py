"""Provider status updates: forward-only, deduped, every update in message_events,
cost recorded; and the Twilio status-callback endpoint in front of it."""

from __future__ import annotations

import time
import uuid
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import select

from shared.core.db import session_scope
from shared.core.models import Contact, Message, MessageEvent, OptOut
from shared.outbound.status_updates import apply_status_update
from tests.helpers import wait_for


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
    time.sleep(0.5)
    assert len(events_of(mid)) == 1


# --- POST /webhooks/twilio/status ------------------------------------------------

TWILIO_TOKEN = "status-test-auth-token"


@pytest.fixture
def twilio_app(monkeypatch: pytest.MonkeyPatch) -> Any:
    from ingest.app import create_app
    from shared.core.config import load_settings

    monkeypatch.setenv("TWILIO_AUTH_TOKEN", TWILIO_TOKEN)
    flask_app = create_app(load_settings())
    flask_app.testing = True
    return flask_app.test_client()


def signed_post(client: Any, mid: uuid.UUID, form: dict[str, str], token: str = TWILIO_TOKEN) -> Any:
    from twilio.request_validator import RequestValidator

    url = f"https://clinicq.test/webhooks/twilio/status?mid={mid}"
    signature = RequestValidator(token).compute_signature(url, form)
    return client.post(f"/webhooks/twilio/status?mid={mid}", data=form,
                       headers={"X-Twilio-Signature": signature})


def test_requestvalidator_vector_from_providers_md() -> None:
    from twilio.request_validator import RequestValidator

    params = {"CallSid": "CA1234567890ABCDE", "Caller": "+14158675309", "Digits": "1234",
              "From": "+14158675309", "To": "+18005551212"}
    url = "https://mycompany.com/myapp.php?foo=1&bar=2"
    assert RequestValidator("12345").compute_signature(url, params) == "RSOYDt4T1cUTdK1PDd93/VVr8B8="


def test_twilio_status_callback_signature_required(twilio_app: Any) -> None:
    mid, sid = make_sent_message()
    form = {"MessageSid": sid, "MessageStatus": "delivered", "AccountSid": "AC1"}
    assert twilio_app.post(f"/webhooks/twilio/status?mid={mid}", data=form).status_code == 401
    assert signed_post(twilio_app, mid, form, token="wrong").status_code == 403
    # The signature covers the query string: moving it to another message fails.
    from twilio.request_validator import RequestValidator

    sig = RequestValidator(TWILIO_TOKEN).compute_signature(
        f"https://clinicq.test/webhooks/twilio/status?mid={mid}", form)
    resp = twilio_app.post(f"/webhooks/twilio/status?mid={uuid.uuid4()}", data=form,
                           headers={"X-Twilio-Signature": sig})
    assert resp.status_code == 403


def test_twilio_status_callbacks_end_to_end(twilio_app: Any, celery_worker: Any) -> None:
    mid, sid = make_sent_message()
    celery_worker(queues="inbound", concurrency=1)
    base = {"MessageSid": sid, "AccountSid": "AC1", "To": "+5511999999999", "From": "+551133334444"}
    assert signed_post(twilio_app, mid, {**base, "MessageStatus": "delivered"}).status_code == 200
    wait_for(lambda: status_of(mid).status == "delivered", timeout=30)
    # A late `sent` and a repeated `delivered` (Twilio retry) change nothing.
    assert signed_post(twilio_app, mid, {**base, "MessageStatus": "sent"}).status_code == 200
    assert signed_post(twilio_app, mid, {**base, "MessageStatus": "delivered"}).status_code == 200
    wait_for(lambda: len(events_of(mid)) == 2, timeout=30)
    time.sleep(0.5)
    evs = events_of(mid)
    assert [e.event for e in evs] == ["twilio_status", "twilio_status_ignored"]
    assert "To" not in evs[0].payload and evs[0].payload["MessageStatus"] == "delivered"
    assert status_of(mid).status == "delivered"


def test_unknown_message_callback_is_200(twilio_app: Any) -> None:
    form = {"MessageSid": "SM" + "f" * 32, "MessageStatus": "delivered"}
    assert signed_post(twilio_app, uuid.uuid4(), form).status_code == 200
