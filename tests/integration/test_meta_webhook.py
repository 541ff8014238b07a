"""`GET|POST /webhooks/meta`: WhatsApp Cloud API payloads shaped like Meta's,
signed with HMAC-SHA256 over the raw bytes, through real workers."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import func, select

from shared.core.db import session_scope
from shared.core.models import Contact, ContactIdentity, Conversation, Message, MessageEvent
from shared.core.payloads import PayloadError
from shared.providers.meta.inbound import parse_meta_webhook
from tests.helpers import wait_for
from tests.integration.test_twilio_inbound import sms_form
from tests.integration.test_webhook_contract import (
    META_VERIFY_TOKEN,
    WebhookContract,
    WebhookRequest,
    make_provider_client,
    meta_request,
    queued_tasks,
    twilio_request,
)

WABA_ID = "102290129340398"
PHONE_NUMBER_ID = "106540352242922"


def wamid() -> str:
    return "wamid.HBgM" + uuid.uuid4().hex.upper()


def change(value: dict[str, Any]) -> dict[str, Any]:
    base = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550783881", "phone_number_id": PHONE_NUMBER_ID},
    }
    return {"field": "messages", "value": {**base, **value}}


def envelope(*changes: dict[str, Any], entries: int = 1) -> dict[str, Any]:
    return {
        "object": "whatsapp_business_account",
        "entry": [{"id": WABA_ID, "changes": list(changes)} for _ in range(entries)],
    }


def inbound(
    message: dict[str, Any], wa_id: str = "555499261407", name: str = "Ana Souza"
) -> dict[str, Any]:
    message = {"from": wa_id, "id": wamid(), "timestamp": "1763611200", **message}
    return change(
        {"contacts": [{"profile": {"name": name}, "wa_id": wa_id}], "messages": [message]}
    )


def text_message(body: str = "Olá, gostaria de agendar uma limpeza", **kw: Any) -> dict[str, Any]:
    return inbound({"type": "text", "text": {"body": body}}, **kw)


def status(wid: str, value: str, ts: str = "1763611300", **extra: Any) -> dict[str, Any]:
    return {
        "id": wid,
        "status": value,
        "timestamp": ts,
        "recipient_id": "555499261407",
        "conversation": {"id": "CONVERSATION_ID", "origin": {"type": "utility"}},
        "pricing": {"billable": True, "pricing_model": "PMP", "category": "utility"},
        **extra,
    }


@pytest.fixture
def provider_client(settings: Any) -> Any:
    return make_provider_client(settings)


# --- parsing (pure) ----------------------------------------------------------


def test_batch_of_entries_and_changes_parses_every_message_type(settings: Any) -> None:
    context_wamid = wamid()
    doc = envelope(
        text_message(),
        inbound(
            {
                "type": "button",
                "context": {"from": "15550783881", "id": context_wamid},
                "button": {"payload": "CONFIRM_a1b2", "text": "Confirmar"},
            }
        ),
        inbound(
            {
                "type": "interactive",
                "interactive": {
                    "type": "list_reply",
                    "list_reply": {"id": "opt_precos", "title": "Preços", "description": "valores"},
                },
            }
        ),
        inbound(
            {
                "type": "interactive",
                "interactive": {
                    "type": "button_reply",
                    "button_reply": {"id": "RESCHEDULE_9", "title": "Remarcar"},
                },
            }
        ),
        inbound(
            {
                "type": "image",
                "image": {
                    "caption": "pedido do exame",
                    "mime_type": "image/jpeg",
                    "sha256": "abc",
                    "id": "1234567890",
                },
            }
        ),
        inbound(
            {
                "type": "audio",
                "audio": {"mime_type": "audio/ogg; codecs=opus", "id": "555", "voice": True},
            }
        ),
        inbound(
            {
                "type": "document",
                "document": {"filename": "laudo.pdf", "mime_type": "application/pdf", "id": "777"},
            }
        ),
        inbound(
            {
                "type": "location",
                "location": {
                    "latitude": -29.16,
                    "longitude": -51.17,
                    "name": "Clínica",
                    "address": "Rua A, 1",
                },
            }
        ),
        inbound({"type": "reaction", "reaction": {"message_id": context_wamid, "emoji": "👍"}}),
        entries=1,
    )
    batch = parse_meta_webhook(doc_bytes(doc), settings)
    assert len(batch.messages) == 8 and len(batch.skipped) == 1  # the reaction
    text, button, list_reply, button_reply, image, audio, document, location = batch.messages

    assert text["channel"] == "whatsapp"
    assert text["contact"] == {"phone": "+5554999261407", "name": "Ana Souza"}  # ninth digit added
    assert text["message"]["text"] == "Olá, gostaria de agendar uma limpeza"
    assert text["message"]["timestamp"] == datetime.fromtimestamp(1763611200, UTC).isoformat()
    assert (
        text["provider"] == "meta"
        and text["idempotency_key"] == f"meta:{text['provider_message_id']}"
    )
    assert text["message"]["metadata"]["phone_number_id"] == PHONE_NUMBER_ID

    assert button["message"]["text"] == "Confirmar"
    assert button["message"]["metadata"]["button_payload"] == "CONFIRM_a1b2"
    assert button["message"]["metadata"]["context_message_id"] == context_wamid
    assert list_reply["message"]["text"] == "Preços"
    assert list_reply["message"]["metadata"]["button_payload"] == "opt_precos"
    assert button_reply["message"]["metadata"]["button_payload"] == "RESCHEDULE_9"

    assert image["message"]["text"] == "pedido do exame"
    assert image["message"]["metadata"]["media"] == [
        {"type": "image", "id": "1234567890", "mime_type": "image/jpeg", "sha256": "abc"}
    ]
    assert audio["message"]["text"] == ""
    assert audio["message"]["metadata"]["media"][0]["voice"] is True
    assert document["message"]["metadata"]["media"][0]["filename"] == "laudo.pdf"
    assert location["message"]["metadata"]["location"]["latitude"] == -29.16
    assert location["message"]["text"] == "Clínica — Rua A, 1"


def test_click_to_whatsapp_referral_is_kept(settings: Any) -> None:
    referral = {
        "source_url": "https://fb.me/3cr4Wqqkv",
        "source_id": "120210000000",
        "source_type": "ad",
        "headline": "Clareamento dental",
        "body": "Agende sua avaliação",
        "media_type": "image",
        "ctwa_clid": "ARAkLkA8rmlFeiCktEJQ",
    }
    doc = envelope(
        inbound({"type": "text", "text": {"body": "Quero saber o preço"}, "referral": referral})
    )
    [payload] = parse_meta_webhook(doc_bytes(doc), settings).messages
    assert payload["message"]["metadata"]["referral"] == {
        "source_url": "https://fb.me/3cr4Wqqkv",
        "source_type": "ad",
        "source_id": "120210000000",
        "headline": "Clareamento dental",
        "ctwa_clid": "ARAkLkA8rmlFeiCktEJQ",
    }


def test_statuses_become_status_update_events(settings: Any) -> None:
    wid = wamid()
    failed = status(
        wid,
        "failed",
        errors=[
            {
                "code": 131047,
                "title": "Re-engagement message",
                "message": "Re-engagement message",
                "error_data": {
                    "details": "Message failed to send because more than 24 hours have passed"
                },
            }
        ],
        biz_opaque_callback_data="6f1c0c53-6a53-4a0e-9d0e-6d0b0f0c1e11",
    )
    batch = parse_meta_webhook(
        doc_bytes(envelope(change({"statuses": [status(wid, "delivered"), failed]}))), settings
    )
    delivered, failed_event = batch.statuses
    assert delivered == {
        "provider": "meta",
        "provider_message_id": wid,
        "our_message_id": None,
        "status": "delivered",
        "error_code": None,
        "error_message": None,
        "price": None,
        "price_currency": None,
        "pricing": {"billable": True, "pricing_model": "PMP", "category": "utility"},
        "timestamp": datetime.fromtimestamp(1763611300, UTC).isoformat(),
        "event_id": f"{wid}:delivered",
        "raw": status(wid, "delivered"),
    }
    assert failed_event["error_code"] == "131047"
    assert failed_event["error_message"].startswith("Message failed to send")
    assert failed_event["our_message_id"] == "6f1c0c53-6a53-4a0e-9d0e-6d0b0f0c1e11"


@pytest.mark.parametrize(
    ("doc", "field"),
    [
        (b"[1, 2]", "body"),
        (b"not json", "body"),
        (b'{"object": "whatsapp_business_account"}', "entry"),
        (b'{"object": "whatsapp_business_account", "entry": [{"changes": {}}]}', "entry.0.changes"),
        (
            b'{"object": "whatsapp_business_account", "entry": [{"changes": [{"field": "messages", "value": 3}]}]}',
            "entry.0.changes.0.value",
        ),
        (
            b'{"object": "whatsapp_business_account", "entry": [{"changes": [{"field": "messages", '
            b'"value": {"messages": "x"}}]}]}',
            "entry.0.changes.0.value.messages",
        ),
    ],
)
def test_malformed_bodies_name_the_field(settings: Any, doc: bytes, field: str) -> None:
    with pytest.raises(PayloadError) as exc:
        parse_meta_webhook(doc, settings)
    assert exc.value.field == field


def test_unusable_items_are_skipped_not_fatal(settings: Any) -> None:
    doc = envelope(
        change(
            {
                "messages": [
                    {"id": wamid(), "type": "text", "text": {"body": "sem remetente"}},
                    "junk",
                ]
            }
        ),
        text_message(),
    )
    batch = parse_meta_webhook(doc_bytes(doc), settings)
    assert len(batch.messages) == 1 and len(batch.skipped) == 2


def doc_bytes(doc: Any) -> bytes:
    import orjson

    return orjson.dumps(doc)


# --- the endpoint --------------------------------------------------------------


class TestMetaWebhookContract(WebhookContract):
    path = "/webhooks/meta"
    signature_header = "X-Hub-Signature-256"
    max_body_bytes = 3 * 1024 * 1024  # META_WEBHOOK_MAX_BODY_BYTES: Meta batches are big

    def valid_request(self, unique: str) -> WebhookRequest:
        doc = envelope(text_message())
        doc["entry"][0]["changes"][0]["value"]["messages"][0]["id"] = f"wamid.{unique}"
        return WebhookRequest(*meta_request(doc))

    def forged_request(self, unique: str) -> WebhookRequest:
        return WebhookRequest(*meta_request(envelope(text_message()), secret="not-the-app-secret"))

    def malformed_request(self) -> WebhookRequest:
        return WebhookRequest(*meta_request(b'{"object": "whatsapp_business_account", "entry": '))

    def oversized_request(self) -> WebhookRequest:
        return WebhookRequest(
            *meta_request(envelope(text_message("a" * (self.max_body_bytes + 10))))
        )


def test_large_batch_under_the_meta_limit_is_accepted(
    provider_client: Any, redis_client: Any
) -> None:
    """A 150 KB batch (above the 64 KB limit of our own webhook) is Meta's
    normal business: accepted, every status enqueued."""
    redis_client.delete("inbound")
    statuses = [status(wamid(), "delivered") for _ in range(600)]
    body, headers = meta_request(envelope(change({"statuses": statuses})))
    assert len(body) > 150 * 1024
    assert provider_client.post("/webhooks/meta", data=body, headers=headers).status_code == 200
    assert len(queued_tasks(redis_client)) == 600


def test_verify_handshake(provider_client: Any) -> None:
    ok = provider_client.get(
        "/webhooks/meta",
        query_string={
            "hub.mode": "subscribe",
            "hub.verify_token": META_VERIFY_TOKEN,
            "hub.challenge": "1158201444",
        },
    )
    assert ok.status_code == 200
    assert ok.data == b"1158201444" and ok.content_type.startswith("text/plain")
    for params in (
        {"hub.mode": "subscribe", "hub.verify_token": "wrong", "hub.challenge": "1"},
        {"hub.mode": "unsubscribe", "hub.verify_token": META_VERIFY_TOKEN, "hub.challenge": "1"},
        {"hub.challenge": "1"},
    ):
        assert provider_client.get("/webhooks/meta", query_string=params).status_code == 403


def test_unconfigured_app_secret_refuses_everything(settings: Any) -> None:
    from ingest.app import create_app

    app = create_app(settings.model_copy(update={"META_APP_SECRET": ""}))
    body, headers = meta_request(envelope(text_message()), secret="")
    resp = app.test_client().post("/webhooks/meta", data=body, headers=headers)
    assert resp.status_code == 403 and "not configured" in resp.get_json()["error"]


def test_handshake_refused_when_no_verify_token_configured(settings: Any) -> None:
    from ingest.app import create_app

    app = create_app(settings.model_copy(update={"META_VERIFY_TOKEN": ""}))
    resp = app.test_client().get(
        "/webhooks/meta",
        query_string={"hub.mode": "subscribe", "hub.verify_token": "", "hub.challenge": "1"},
    )
    assert resp.status_code == 403


def test_batch_enqueues_one_task_per_message_and_status(
    provider_client: Any, redis_client: Any
) -> None:
    redis_client.delete("inbound")
    wid = wamid()
    doc = envelope(
        text_message(),
        inbound({"type": "button", "button": {"payload": "CONFIRM_x", "text": "Confirmar"}}),
        change({"statuses": [status(wid, "sent"), status(wid, "delivered")]}),
        entries=1,
    )
    body, headers = meta_request(doc)
    resp = provider_client.post("/webhooks/meta", data=body, headers=headers)
    assert resp.status_code == 200
    tasks = queued_tasks(redis_client)
    assert [t.name for t in tasks] == [
        "clinicq.inbound.process",
        "clinicq.inbound.process",
        "clinicq.inbound.status_update",
        "clinicq.inbound.status_update",
    ]
    assert all(t.queue == "inbound" for t in tasks)
    [sent_event] = tasks[2].args
    assert sent_event["provider_message_id"] == wid and sent_event["event_id"] == f"{wid}:sent"
    # Meta redelivers the same batch: nothing new on the queue.
    assert provider_client.post("/webhooks/meta", data=body, headers=headers).status_code == 200
    assert len(queued_tasks(redis_client)) == 4
    assert redis_client.exists(f"clinicq:idem:meta-status:{wid}:delivered")


def test_whatsapp_and_sms_from_the_same_patient_are_one_contact(
    provider_client: Any, celery_worker: Any, redis_client: Any
) -> None:
    """WhatsApp wa_id 555499261407 (no ninth digit) via Meta and an SMS from
    +5554999261407 via Twilio: one contact, named from the WhatsApp profile."""
    redis_client.delete("inbound")
    celery_worker(queues="inbound")
    body, headers = meta_request(envelope(text_message(wa_id="555499261407", name="Ana Souza")))
    assert provider_client.post("/webhooks/meta", data=body, headers=headers).status_code == 200
    form_body, form_headers = twilio_request(sms_form(From="+5554999261407"))
    assert (
        provider_client.post("/webhooks/twilio", data=form_body, headers=form_headers).status_code
        == 200
    )
    # Duplicates of both deliveries change nothing.
    provider_client.post("/webhooks/meta", data=body, headers=headers)
    provider_client.post("/webhooks/twilio", data=form_body, headers=form_headers)

    wait_for(lambda: _count(Message) == 2)
    with session_scope() as s:
        messages = s.scalars(select(Message).order_by(Message.channel)).all()
        assert [m.channel for m in messages] == ["sms", "whatsapp"]
        assert messages[0].contact_id == messages[1].contact_id
        contact = s.get(Contact, messages[0].contact_id)
        assert contact.name == "Ana Souza"
        assert s.execute(select(ContactIdentity.kind, ContactIdentity.value)).all() == [
            ("phone", "+5554999261407")
        ]
    assert _count(Contact) == 1 and _count(Conversation) == 1


def test_unknown_number_creates_contact_named_from_profile(
    provider_client: Any, celery_worker: Any, redis_client: Any
) -> None:
    redis_client.delete("inbound")
    celery_worker(queues="inbound")
    body, headers = meta_request(
        envelope(text_message(wa_id="5511987654321", name="  Carlos   Lima "))
    )
    provider_client.post("/webhooks/meta", data=body, headers=headers)
    wait_for(lambda: _count(Message) == 1)
    with session_scope() as s:
        contact = s.scalars(select(Contact)).one()
        assert contact.name == "Carlos Lima" and contact.source == "meta"
        assert s.scalars(select(ContactIdentity.value)).all() == ["+5511987654321"]


def test_status_batch_moves_outbound_message_status(
    provider_client: Any, celery_worker: Any, redis_client: Any
) -> None:
    """Statuses reach the delivery engine's status task and move our message
    forward only (read after delivered; a late `sent` changes nothing)."""
    redis_client.delete("inbound")
    message_id = uuid.uuid4()
    wid = wamid()
    with session_scope() as s:
        s.add(
            Message(
                id=message_id,
                channel="whatsapp",
                direction="outbound",
                purpose="reminder",
                text="Lembrete",
                status="sent",
                provider="meta_whatsapp",
                provider_message_id=wid,
            )
        )
    celery_worker(queues="inbound")
    doc = envelope(
        change(
            {
                "statuses": [
                    status(wid, "delivered", "1763611300"),
                    status(wid, "read", "1763611400"),
                ]
            }
        ),
        change({"statuses": [status(wid, "sent", "1763611200")]}),
    )
    body, headers = meta_request(doc)
    assert provider_client.post("/webhooks/meta", data=body, headers=headers).status_code == 200
    assert provider_client.post("/webhooks/meta", data=body, headers=headers).status_code == 200

    def events() -> int:
        with session_scope() as s:
            return (
                s.scalar(
                    select(func.count())
                    .select_from(MessageEvent)
                    .where(MessageEvent.message_id == message_id)
                )
                or 0
            )

    wait_for(lambda: events() >= 3)
    with session_scope() as s:
        msg = s.get(Message, message_id)
        assert msg.status == "read"
        assert msg.read_at is not None
    assert events() == 3  # one per distinct status, the redelivery added none


def _count(model: Any) -> int:
    with session_scope() as s:
        return s.scalar(select(func.count()).select_from(model)) or 0


@pytest.fixture
def provider_ingest_server(tmp_path: Any) -> Any:
    """The real gunicorn configuration serving the real app, with provider
    secrets in its environment (PUBLIC_BASE_URL as the tests sign for)."""
    import os

    from tests.integration.processes import gunicorn_server
    from tests.integration.test_webhook_contract import (
        META_APP_SECRET,
        PUBLIC_BASE_URL,
        TWILIO_AUTH_TOKEN,
    )

    env = {
        **os.environ,
        "META_APP_SECRET": META_APP_SECRET,
        "TWILIO_AUTH_TOKEN": TWILIO_AUTH_TOKEN,
        "PUBLIC_BASE_URL": PUBLIC_BASE_URL,
    }
    with gunicorn_server(tmp_path / "gunicorn.log", env) as base:
        yield base


def test_real_http_through_gunicorn_and_worker(
    provider_ingest_server: str, celery_worker: Any, redis_client: Any
) -> None:
    """Over real HTTP to gunicorn: a Meta message, an 80 KB Meta status batch
    and a Twilio SMS from the same patient — one contact, statuses applied."""
    import requests

    redis_client.delete("inbound")
    celery_worker(queues="inbound")
    wid = wamid()
    outbound_id = uuid.uuid4()
    with session_scope() as s:
        s.add(
            Message(
                id=outbound_id,
                channel="whatsapp",
                direction="outbound",
                purpose="reminder",
                text="Lembrete",
                status="sent",
                provider="meta_whatsapp",
                provider_message_id=wid,
            )
        )
    base = provider_ingest_server
    body, headers = meta_request(envelope(text_message(wa_id="555499261407")))
    assert requests.post(f"{base}/webhooks/meta", data=body, headers=headers, timeout=10).ok
    statuses = [status(wamid(), "delivered") for _ in range(300)] + [status(wid, "read")]
    body, headers = meta_request(envelope(change({"statuses": statuses})))
    assert len(body) > 64 * 1024  # above the limit of our own webhook
    resp = requests.post(f"{base}/webhooks/meta", data=body, headers=headers, timeout=30)
    assert resp.status_code == 200
    form_body, form_headers = twilio_request(sms_form())
    resp = requests.post(
        f"{base}/webhooks/twilio", data=form_body, headers=form_headers, timeout=10
    )
    assert resp.status_code == 200 and resp.text.endswith("<Response/>")

    wait_for(lambda: _count(Message) == 3, timeout=60)
    with session_scope() as s:
        wait_for(
            lambda: s.get(Message, outbound_id, populate_existing=True).status == "read", timeout=60
        )
        inbound = s.scalars(select(Message).where(Message.direction == "inbound")).all()
        assert len({m.contact_id for m in inbound}) == 1
    assert _count(Contact) == 1
