"""A 202 is a promise (ARCHITECTURE rule 12): input PostgreSQL cannot store
(NUL, lone surrogates, keys longer than their column, JSON nested hundreds of
levels, wrong JSON types) is repaired or refused where it enters, never
accepted and then lost in the worker, and never a 500.

The policy (shared/core/validation.py): what a person wrote is repaired and the
repair reported; exact keys and text the REST API is asked to send are
refused with a 400 naming the field."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from sqlalchemy import select

from shared.core.db import session_scope
from shared.core.models import ApiKey, Contact, Message
from shared.core.payloads import parse_json_object
from tests.helpers import LEGACY_SECRET, dumps, seed_payload, sign_headers, wait_for
from tests.integration.test_imap import imap_settings, make_email
from tests.integration.test_twilio_inbound import whatsapp_form
from tests.integration.test_webhook_contract import (
    make_provider_client,
    meta_request,
    queued_tasks,
    twilio_request,
)

REPAIRED = "NUL characters removed, unpaired surrogates replaced by U+FFFD"


def filed(message_id: str) -> Message:
    """The message the worker filed (waits for it)."""

    def get() -> Message | None:
        with session_scope() as s:
            msg = s.get(Message, uuid.UUID(message_id))
            if msg is not None:
                s.expunge(msg)
            return msg

    return wait_for(get, timeout=30)


def contact_name(contact_id: Any) -> str | None:
    with session_scope() as s:
        return s.get(Contact, contact_id).name


def nested(levels: int) -> dict[str, Any]:
    doc: dict[str, Any] = {}
    for _ in range(levels):
        doc = {"a": doc}
    return doc


@pytest.fixture
def api_auth() -> dict[str, str]:
    from ingest.api.auth import generate_api_key, hash_api_key

    key = generate_api_key()
    with session_scope() as s:
        s.add(ApiKey(name="poison-tests", key_hash=hash_api_key(key), scopes=["intake", "send", "read", "admin"]))
    return {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}


# --- POST /api/webhook: repaired, filed by a real worker ------------------------


def test_nul_in_text_name_and_metadata_is_repaired_and_filed(client, celery_worker) -> None:
    celery_worker(queues="inbound")
    payload = seed_payload()
    payload["contact"]["name"] = "João\u0000 Silva"
    payload["message"]["text"] = "Quero\u0000 marcar"
    payload["message"]["metadata"] = {"pa\u0000ge": "/agenda\u0000mento", "list": ["a\u0000"]}
    body = dumps(payload)
    resp = client.post("/api/webhook", data=body, headers=sign_headers(body))
    assert resp.status_code == 202, resp.data
    warnings = resp.get_json()["warnings"]
    for field in ("contact.name", "message.text", "message.metadata"):
        assert f"{field}: {REPAIRED}" in warnings

    msg = filed(resp.get_json()["message_id"])
    assert msg.status == "received"
    assert msg.text == "Quero marcar"
    assert msg.metadata_ == {"page": "/agendamento", "list": ["a"]}
    assert contact_name(msg.contact_id) == "João Silva"


def test_lone_surrogate_escape_is_replaced_and_filed(client, celery_worker) -> None:
    # A JavaScript string cut inside an emoji serializes as "\ud83d".
    celery_worker(queues="inbound")
    payload = seed_payload()
    payload["message"]["text"] = "Obrigada \ud83d"
    payload["message"]["metadata"] = {"k": "\udc00"}
    body = json.dumps(payload).encode()
    assert b"\\ud83d" in body
    resp = client.post("/api/webhook", data=body, headers=sign_headers(body))
    assert resp.status_code == 202, resp.data
    assert f"message.text: {REPAIRED}" in resp.get_json()["warnings"]
    msg = filed(resp.get_json()["message_id"])
    assert msg.text == "Obrigada \ufffd"
    assert msg.metadata_ == {"k": "\ufffd"}


def test_surrogate_fallback_parser_refuses_what_orjson_refuses() -> None:
    from shared.core.payloads import PayloadError

    for body in (b'{"a": "\\ud800", "b": NaN}', b'{"a": "\\ud800", "b": 1' + b"0" * 30 + b"}",
                 b'{"a": "\\ud800", "b": 1e400}',
                 b'{"a": "\\ud800"' + b"\xff}"):
        with pytest.raises(PayloadError) as exc:
            parse_json_object(body)
        assert exc.value.field == "body"
    assert parse_json_object(b'{"a": "\\ud83d\\ude00 \\ud800"}') == {"a": "😀 \ud800"}


def test_webhook_id_and_idempotency_key_are_bounded_by_the_column(
    client, celery_worker
) -> None:
    # Stored as `webhook:<key>` in a 255-character column: 247 for the key.
    body = dumps(seed_payload())
    resp = client.post("/api/webhook", data=body, headers=sign_headers(body, msg_id="m" * 250))
    assert resp.status_code == 400 and resp.get_json()["field"] == "webhook-id"

    # Idempotency-Key applies where there is no webhook-id (the legacy secret).
    legacy = dumps({**seed_payload(), "webhook_secret": LEGACY_SECRET})
    resp = client.post("/api/webhook", data=legacy,
                       headers={"Content-Type": "application/json", "Idempotency-Key": "k" * 254})
    assert resp.status_code == 400, resp.data
    assert resp.get_json()["field"] == "Idempotency-Key"
    assert "1-247" in resp.get_json()["error"]

    # The longest key allowed fits the column: filed, not lost.
    celery_worker(queues="inbound")
    resp = client.post("/api/webhook", data=body, headers=sign_headers(body, msg_id="m" * 247))
    assert resp.status_code == 202, resp.data
    msg = filed(resp.get_json()["message_id"])
    assert msg.idempotency_key == "webhook:" + "m" * 247


def test_metadata_nested_hundreds_of_levels_is_a_400(client) -> None:
    payload = seed_payload()
    payload["message"]["metadata"] = nested(300)
    body = json.dumps(payload).encode()
    resp = client.post("/api/webhook", data=body, headers=sign_headers(body))
    assert resp.status_code == 400, resp.data
    assert resp.get_json()["field"] == "message.metadata"
    # 32 levels is still a sender's metadata.
    payload["message"]["metadata"] = nested(31)
    body = json.dumps(payload).encode()
    assert client.post("/api/webhook", data=body, headers=sign_headers(body)).status_code == 202


def test_timestamp_outside_datetime_range_is_dropped_and_the_message_filed(
    client, celery_worker
) -> None:
    # Year 1 or 9999 with an offset is stored by PostgreSQL but cannot be read
    # back into a datetime: the message would be filed and then unreadable.
    celery_worker(queues="inbound")
    for stamp in ("0001-01-01T00:00:00+23:59", "9999-12-31T23:59:59-23:59"):
        payload = seed_payload()
        payload["message"]["timestamp"] = stamp
        body = dumps(payload)
        resp = client.post("/api/webhook", data=body, headers=sign_headers(body))
        assert resp.status_code == 202, resp.data
        warning = "message.timestamp dropped: not between 1970 and 9000"
        assert warning in resp.get_json()["warnings"]
        msg = filed(resp.get_json()["message_id"])
        assert msg.sent_at_provider is None
        status = client.get(resp.get_json()["status_url"].removeprefix("https://clinicq.test"))
        assert status.status_code == 200 and status.get_json()["status"] == "received"


def test_status_url_with_a_non_ascii_token_is_a_401(client) -> None:
    resp = client.get(f"/api/messages/{uuid.uuid4()}?token=%C3%A9")
    assert resp.status_code == 401 and resp.get_json()["field"] == "token"


# --- REST API: refused, naming the field ----------------------------------------


@pytest.mark.parametrize(
    ("doc", "field"),
    [
        ({"to": "+5511987654321", "text": "Olá\u0000"}, "text"),
        ({"to": "+5511987654321", "text": "Olá \ud800"}, "text"),
        ({"to": "+5511987654321", "subject": "a\u0000", "text": "x", "channel": "email"}, "subject"),
        ({"to": "+5511987654321\u0000", "text": "x"}, "to"),
        ({"to": "+5511987654321", "template": "t", "data": {"nome": "A\u0000"}}, "data.nome"),
        ({"to": "+5511987654321", "template": "t", "data": nested(40)}, "data.a.a.a.a.a.a.a.a."),
        ({"to": "+5511987654321", "text": "x", "idempotency_key": "k" * 252}, "idempotency_key"),
        ({"to": "+5511987654321", "text": "x", "idempotency_key": "k\u0000"}, "idempotency_key"),
    ],
)
def test_messages_api_refuses_unstorable_input(client, api_auth, doc, field) -> None:
    resp = client.post("/api/messages", data=json.dumps(doc), headers=api_auth)
    assert resp.status_code == 400, resp.data
    assert resp.get_json()["field"].startswith(field), resp.get_json()


def test_messages_api_idempotency_header_and_deep_body(client, api_auth) -> None:
    doc = json.dumps({"to": "+5511987654321", "text": "x"})
    resp = client.post("/api/messages", data=doc, headers={**api_auth, "Idempotency-Key": "k" * 254})
    assert resp.status_code == 400 and resp.get_json()["field"] == "Idempotency-Key"
    deep = '{"to": "+5511987654321", "text": "x", "data": ' + "[" * 5000 + "]" * 5000 + "}"
    resp = client.post("/api/messages", data=deep, headers=api_auth)
    assert resp.status_code == 400 and resp.get_json()["field"] == "body"
    # The longest key that fits the column (as `api:<key>`) is stored whole.
    resp = client.post("/api/messages", data=doc, headers={**api_auth, "Idempotency-Key": "k" * 251})
    assert resp.status_code == 202, resp.data
    with session_scope() as s:
        msg = s.get(Message, uuid.UUID(resp.get_json()["message_id"]))
        assert msg.idempotency_key == "api:" + "k" * 251


APPOINTMENT = {
    "external_id": "ag-1",
    "contact": {"phone": "+5511987654321", "name": "Ana"},
    "starts_at": "2031-01-10T10:00:00-03:00",
}


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"timezone": "America"}, "timezone"),  # a directory in tzdata
        ({"timezone": "posixrules"}, "timezone"),
        ({"timezone": "right/UTC"}, "timezone"),
        ({"timezone": "America/Sao_Paulo\u0000"}, "timezone"),
        ({"notes": "traga exames\u0000"}, "notes"),
        ({"professional": "Dra. \ud800"}, "professional"),
        ({"starts_at": "9999-12-31T23:59:59-03:00"}, "starts_at"),  # past datetime's range
    ],
)
def test_appointments_api_refuses_bad_zones_and_unstorable_text(
    client, api_auth, change, field
) -> None:
    resp = client.post("/api/appointments", data=json.dumps({**APPOINTMENT, **change}),
                       headers=api_auth)
    assert resp.status_code == 400, resp.data
    assert resp.get_json()["field"] == field


def test_appointment_contact_name_with_nul_is_repaired(client, api_auth) -> None:
    doc = {**APPOINTMENT, "contact": {"phone": "+5511987654321", "name": "Ana\u0000 Lima"}}
    resp = client.post("/api/appointments", data=json.dumps(doc), headers=api_auth)
    assert resp.status_code == 201, resp.data
    assert f"contact.name: {REPAIRED}" in resp.get_json()["warnings"]
    assert contact_name(uuid.UUID(resp.get_json()["contact_id"])) == "Ana Lima"
    resp = client.patch(f"/api/appointments/{resp.get_json()['id']}",
                         data=json.dumps({"timezone": "America"}), headers=api_auth)
    assert resp.status_code == 400 and resp.get_json()["field"] == "timezone"


# --- provider webhooks: repaired and filed --------------------------------------


def test_twilio_form_with_nul_is_filed_repaired(settings, celery_worker) -> None:
    celery_worker(queues="inbound")
    client = make_provider_client(settings)
    form = whatsapp_form(Body="Bom dia\u0000, doutora", ProfileName="Ana\u0000 Souza",
                         Label="casa\u0000")
    body, headers = twilio_request(form)
    resp = client.post("/webhooks/twilio", data=body, headers=headers)
    assert resp.status_code == 200, resp.data
    with session_scope() as s:
        wait_for(lambda: s.scalar(select(Message.id).where(
            Message.provider_message_id == form["MessageSid"])))
        msg = s.scalar(select(Message).where(Message.provider_message_id == form["MessageSid"]))
        assert msg.text == "Bom dia, doutora"
        assert msg.metadata_["input_repaired"] == ["contact.name", "message.text"]
        assert s.get(Contact, msg.contact_id).name == "Ana Souza"


def test_twilio_status_callback_with_an_overlong_sid_is_a_400(settings) -> None:
    client = make_provider_client(settings)
    form = {"MessageSid": "SM" + "a" * 200, "MessageStatus": "delivered"}
    body, headers = twilio_request(form, path="/webhooks/twilio/status")
    resp = client.post("/webhooks/twilio/status", data=body, headers=headers)
    assert resp.status_code == 400 and resp.get_json()["field"] == "MessageSid"


def test_meta_message_with_nul_and_deep_contact_card_is_filed(settings, celery_worker) -> None:
    from tests.integration.test_meta_webhook import envelope, inbound, text_message

    celery_worker(queues="inbound")
    client = make_provider_client(settings)
    text = text_message("Olá\u0000 tudo bem", name="Ana\u0000")
    card = inbound({"type": "contacts", "contacts": [{"name": {"formatted_name": "Bia"},
                                                      "org": nested(300)}]},
                  wa_id="5511988887777", name="Bia Lima")
    body, headers = meta_request(json.dumps(envelope(text, card)).encode())
    resp = client.post("/webhooks/meta", data=body, headers=headers)
    assert resp.status_code == 200, resp.data
    wamids = [text["value"]["messages"][0]["id"], card["value"]["messages"][0]["id"]]
    with session_scope() as s:
        wait_for(lambda: s.query(Message).filter(Message.provider_message_id.in_(wamids)).count()
                 == 2, timeout=30)
        first = s.scalar(select(Message).where(Message.provider_message_id == wamids[0]))
        assert first.text == "Olá tudo bem"
        assert s.get(Contact, first.contact_id).name == "Ana"
        second = s.scalar(select(Message).where(Message.provider_message_id == wamids[1]))
        assert second.text == "Bia"


def test_meta_signature_header_with_non_ascii_is_a_403(settings) -> None:
    client = make_provider_client(settings)
    resp = client.post("/webhooks/meta", data=b"{}",
                       headers={"X-Hub-Signature-256": "sha256=\u00e9",
                                "Content-Type": "application/json"})
    assert resp.status_code == 403 and resp.get_json()["field"] == "X-Hub-Signature-256"


def test_imap_body_with_nul_and_undecodable_bytes_is_filed(
    settings, celery_worker, redis_client
) -> None:
    from shared.core.taskqueue import TaskPublisher
    from shared.providers.email.imap import poll_mailbox
    from tests.fakes.imap_server import FakeImapServer

    celery_worker(queues="inbound")
    raw = make_email(text="Quero remarcar.", message_id="<nul.1@mail.example.com>")
    raw = raw.replace(b"Quero remarcar.", b"Quero\x00 remarcar \xff.")
    raw = raw.replace(b"<nul.1@mail.example.com>", b"<nul\x00.1@mail.example.com>")
    with FakeImapServer() as server:
        server.add_message(raw)
        assert poll_mailbox(imap_settings(settings, server), TaskPublisher(redis_client)) == 1
    with session_scope() as s:
        wait_for(lambda: s.scalar(select(Message.id).where(Message.channel == "email")))
        msg = s.scalar(select(Message).where(Message.channel == "email"))
        assert msg.text == "Quero remarcar \ufffd."
        assert msg.provider_message_id.startswith("<sha256.")
        assert "message.text" in msg.metadata_["input_repaired"]


# --- inbox webhooks: wrong JSON types are 400s naming the field ------------------


@pytest.fixture
def inbox_client(settings) -> Any:
    from ingest.app import create_app

    app = create_app(settings.model_copy(update={
        "CHATWOOT_WEBHOOK_TOKEN": "cw-token", "ROCKETCHAT_LIVECHAT_TOKEN": "rc-token"}))
    app.testing = True
    return app.test_client()


def chatwoot_message(**fields: Any) -> dict[str, Any]:
    return {"event": "message_created", "message_type": "outgoing", "id": 41,
            "content": "Olá! Temos horário amanhã.", "private": False,
            "conversation": {"id": 7, "display_id": 7}, "sender": {"name": "Rita"}, **fields}


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"conversation": "7"}, "conversation"),
        ({"sender": ["Rita"]}, "sender"),
        ({"id": {"x": 1}}, "id"),
        ({"id": "9" * 200}, "id"),
        ({"conversation": {"display_id": [7]}}, "conversation.display_id"),
        ({"conversation": {"display_id": "c" * 65}}, "conversation.display_id"),
        ({"event": "conversation_status_changed", "status": "resolved", "display_id": 7,
          "updated_at": {"t": 1}}, "updated_at"),
    ],
)
def test_chatwoot_fields_of_the_wrong_type_are_400s(inbox_client, fields, field) -> None:
    resp = inbox_client.post("/webhooks/chatwoot?token=cw-token",
                             data=dumps(chatwoot_message(**fields)),
                             content_type="application/json")
    assert resp.status_code == 400, resp.data
    assert resp.get_json()["field"] == field


def rocketchat_message(**fields: Any) -> dict[str, Any]:
    message = {"_id": "m1", "msg": "Olá! Temos horário.", "u": {"_id": "agent1", "name": "Rita"},
               **fields}
    return {"_id": "room1", "type": "Message", "visitor": {"_id": "v1"}, "messages": [message]}


@pytest.mark.parametrize(
    ("doc", "field"),
    [
        ({"_id": "room1", "type": "Message", "messages": {"0": {}}}, "messages"),
        ({"_id": "room1", "type": "Message", "visitor": "v1", "messages": []}, "visitor"),
        (rocketchat_message(u="agent1"), "messages.0.u"),
        (rocketchat_message(_id=["m1"]), "messages.0._id"),
        ({"_id": "r" * 65, "type": "Message", "messages": []}, "_id"),
    ],
)
def test_rocketchat_fields_of_the_wrong_type_are_400s(inbox_client, doc, field) -> None:
    resp = inbox_client.post("/webhooks/rocketchat", data=dumps(doc),
                             headers={"X-RocketChat-Livechat-Token": "rc-token",
                                      "Content-Type": "application/json"})
    assert resp.status_code == 400, resp.data
    assert resp.get_json()["field"] == field


def test_agent_reply_with_nul_is_queued_repaired(inbox_client, redis_client) -> None:
    resp = inbox_client.post("/webhooks/chatwoot?token=cw-token",
                             data=dumps(chatwoot_message(content="Até\u0000 amanhã",
                                                         sender={"name": "Ri\u0000ta"})),
                             content_type="application/json")
    assert resp.status_code == 200, resp.data
    (task,) = queued_tasks(redis_client, "inbox")
    assert task.args[0]["text"] == "Até amanhã" and task.args[0]["agent"] == "Rita"


def test_twilio_num_media_with_a_unicode_digit_is_a_400(settings) -> None:
    client = make_provider_client(settings)
    body, headers = twilio_request(whatsapp_form(NumMedia="²"))  # isdigit(), not int()
    resp = client.post("/webhooks/twilio", data=body, headers=headers)
    assert resp.status_code == 400 and resp.get_json()["field"] == "NumMedia"


def test_twilio_status_with_an_unstorable_price_still_applies(settings, celery_worker) -> None:
    worker = celery_worker(queues="inbound")
    client = make_provider_client(settings)
    ids = []
    for price in ("-1e100", "NaN", "Infinity"):
        sid = "SM" + uuid.uuid4().hex
        mid = uuid.uuid4()
        ids.append(mid)
        with session_scope() as s:
            s.add(Message(id=mid, channel="sms", direction="outbound", status="sent",
                          provider="twilio_sms", provider_message_id=sid,
                          to_address="+5511987654321"))
        form = {"MessageSid": sid, "MessageStatus": "delivered", "Price": price,
                "PriceUnit": "USD"}
        body, headers = twilio_request(form, path="/webhooks/twilio/status")
        resp = client.post("/webhooks/twilio/status", data=body, headers=headers)
        assert resp.status_code == 200, resp.data

    def delivered() -> bool:
        with session_scope() as s:
            return all(s.get(Message, mid).status == "delivered" for mid in ids)

    try:
        wait_for(delivered, timeout=30)
    except AssertionError:
        raise AssertionError(worker.log_text()[-3000:]) from None
    with session_scope() as s:
        assert all(s.get(Message, mid).cost is None for mid in ids)


def test_twilio_webhook_with_a_non_utf8_query_string_is_a_403(settings) -> None:
    # The URL Twilio signed is rebuilt from the raw query string; bytes that
    # are not UTF-8 cannot be what Twilio called, so the signature fails.
    client = make_provider_client(settings)
    body, headers = twilio_request(whatsapp_form())
    for path in ("/webhooks/twilio", "/webhooks/twilio/status"):
        resp = client.post(path, data=body, headers=headers,
                           environ_overrides={"QUERY_STRING": "mid=\xff"})
        assert resp.status_code == 403, resp.data
        assert resp.get_json()["field"] == "X-Twilio-Signature"
