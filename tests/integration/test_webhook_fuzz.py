"""Hypothesis-generated requests against the real app (real Redis behind it):
structured mutations of the seed payload, arbitrary JSON and arbitrary bytes,
signed and unsigned, with odd headers. Never a 5xx; every 4xx is JSON with an
`error`; every 2xx is a 202 with a message id.

The three tests together run 650 generated requests.

Below them the same property on every other endpoint (REST API, signed
Twilio and Meta webhooks, inbox webhooks, status URL), with values PostgreSQL
cannot store; whatever is accepted is run through its worker's function on
the real database (about 600 more requests)."""

from __future__ import annotations

import copy
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.helpers import LEGACY_SECRET, OLD_SIGNING_SECRET, SIGNING_SECRET, seed_payload

FUZZ = settings(
    max_examples=250,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    derandomize=True,  # reproducible in CI; a failure prints its example
)

# --- values -------------------------------------------------------------------

odd_text = st.one_of(
    st.text(max_size=40),
    st.sampled_from([
        "", " ", "\u0000", "\ud7ff", "💬" * 3, "a" * 5000, "+55", "+5511999999999",
        "11 99999-9999", "joao@email.com", "@", "not-an-email", "123.456.789-09",
        "123.456.789-00", "00000000000", "2025-11-20T03:00:00Z", "2025-13-45T99:00:00",
        "whatsapp", "email", "sms", "web", "telegram", "message", "appointment.created",
    ]),
)
json_scalar = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False), odd_text,
)
json_value = st.recursive(
    json_scalar,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=12,
)

PATHS = [
    ("type",), ("channel",), ("contact",), ("message",),
    ("contact", "name"), ("contact", "phone"), ("contact", "email"), ("contact", "cpf"),
    ("message", "text"), ("message", "timestamp"), ("message", "metadata"),
    ("message", "metadata", "source"), ("webhook_secret",),
]


@st.composite
def mutated_seed(draw: st.DrawFn) -> dict[str, Any]:
    """The seed payload with a few fields replaced, deleted or added."""
    doc = copy.deepcopy(seed_payload())
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        path = draw(st.sampled_from(PATHS))
        parent: Any = doc
        for key in path[:-1]:
            if not isinstance(parent, dict) or not isinstance(parent.get(key), dict):
                parent = None
                break
            parent = parent[key]
        if parent is None:
            continue
        action = draw(st.sampled_from(["replace", "delete", "extra"]))
        if action == "replace":
            parent[path[-1]] = draw(json_value)
        elif action == "delete":
            parent.pop(path[-1], None)
        else:
            parent[draw(st.text(min_size=1, max_size=8))] = draw(json_value)
    return doc


def _dumps(doc: Any) -> bytes:
    # Lone surrogates are not encodable JSON; the request then carries them
    # escaped, which is what a sloppy sender would send.
    try:
        return orjson.dumps(doc)
    except TypeError:
        import json

        return json.dumps(doc).encode()


# --- headers ------------------------------------------------------------------


def sign_headers(
    body: bytes,
    secret: str = SIGNING_SECRET,
    timestamp: datetime | None = None,
    msg_id: str | None = None,
) -> dict[str, str]:
    """Standard Webhooks signature over raw bytes (also non-UTF-8 ones, which
    the `standardwebhooks` signer cannot take): v1,base64(HMAC-SHA256)."""
    import base64
    import hashlib
    import hmac

    msg_id = msg_id or f"msg_{uuid.uuid4().hex}"
    ts = str(int((timestamp or datetime.now(UTC)).timestamp()))
    key = base64.b64decode(secret.removeprefix("whsec_"))
    mac = hmac.new(key, f"{msg_id}.{ts}.".encode() + body, hashlib.sha256).digest()
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": ts,
        "webhook-signature": "v1," + base64.b64encode(mac).decode(),
    }

content_types = st.sampled_from([
    "application/json", "application/json; charset=utf-8", "application/cloudevents+json",
    "text/plain", "application/x-www-form-urlencoded", "", "application/json;;;", "*/*",
])


@st.composite
def headers_for(draw: st.DrawFn, body: bytes) -> dict[str, str]:
    # Mostly validly signed, so the validation behind authentication is fuzzed
    # too; the rest exercises every way authentication can fail.
    mode = draw(st.sampled_from(
        ["signed"] * 6 + ["signed-old", "wrong-key", "stale", "future", "tampered", "garbage", "none"]
    ))
    headers: dict[str, str] = {}
    now = datetime.now(UTC)
    if mode == "signed":
        # Sometimes an odd (but signed) webhook-id: too long, spaces, empty-ish.
        odd_id = draw(st.one_of(
            st.none(),
            st.text(st.characters(min_codepoint=32, max_codepoint=126), min_size=1, max_size=300),
        ))
        headers = sign_headers(body, msg_id=odd_id)
    elif mode == "signed-old":
        headers = sign_headers(body, secret=OLD_SIGNING_SECRET)
    elif mode == "wrong-key":
        headers = sign_headers(body, secret="whsec_" + "QUJD" * 8)
    elif mode == "stale":
        headers = sign_headers(body, timestamp=now - timedelta(minutes=draw(st.integers(6, 10**6))))
    elif mode == "future":
        headers = sign_headers(body, timestamp=now + timedelta(minutes=draw(st.integers(6, 10**6))))
    elif mode == "tampered":
        headers = sign_headers(body + b" ")
    elif mode == "garbage":
        ascii_text = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=80)
        for name in ("webhook-id", "webhook-timestamp", "webhook-signature"):
            if draw(st.booleans()):
                headers[name] = draw(ascii_text)
    headers["Content-Type"] = draw(st.one_of(st.just("application/json"), content_types))
    if draw(st.booleans()):
        headers["Idempotency-Key"] = draw(
            st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=300)
        )
    return headers


OUTCOMES: dict[int, int] = {}


def check(response: Any) -> None:
    OUTCOMES[response.status_code] = OUTCOMES.get(response.status_code, 0) + 1
    assert response.status_code < 500, (response.status_code, response.data[:500])
    if 400 <= response.status_code < 500:
        doc = orjson.loads(response.data)
        assert isinstance(doc.get("error"), str) and doc["error"], doc
    else:
        assert response.status_code == 202, response.data
        uuid.UUID(orjson.loads(response.data)["message_id"])


# --- tests ----------------------------------------------------------------------


@FUZZ
@given(data=st.data(), doc=mutated_seed())
def test_mutated_seed_payloads_never_5xx(client, data: st.DataObject, doc: dict[str, Any]) -> None:
    if data.draw(st.booleans()) and "webhook_secret" not in doc:
        doc["webhook_secret"] = data.draw(st.sampled_from([LEGACY_SECRET, "wrong", 42]))
    body = _dumps(doc)
    check(client.post("/api/webhook", data=body, headers=data.draw(headers_for(body))))


@settings(FUZZ, max_examples=200)
@given(data=st.data(), doc=json_value)
def test_arbitrary_json_never_5xx(client, data: st.DataObject, doc: Any) -> None:
    body = _dumps(doc)
    check(client.post("/api/webhook", data=body, headers=data.draw(headers_for(body))))


@settings(FUZZ, max_examples=200)
@given(data=st.data(), body=st.binary(max_size=2048))
def test_arbitrary_bytes_never_5xx(client, data: st.DataObject, body: bytes) -> None:
    check(client.post("/api/webhook", data=body, headers=data.draw(headers_for(body))))


def test_a_signed_valid_seed_is_accepted_by_the_same_check(client) -> None:
    # The oracle itself: the happy path goes through `check` as a 202.
    body = _dumps(seed_payload())
    headers = {**sign_headers(body), "Content-Type": "application/json"}
    response = client.post("/api/webhook", data=body, headers=headers)
    assert response.status_code == 202
    check(response)


# === every endpoint ================================================================
#
# The same property on every way in: the REST API (API key), the provider
# webhooks (correctly signed, so the parser is reached), the inbox webhooks
# (token) and the status URL. Values include what PostgreSQL cannot store
# (NUL, lone surrogates), over-long ids and JSON nested hundreds of levels.
# Never a 5xx; a 400 names its field; whatever is accepted is then run through
# the very function its worker task calls, on the real database, and must go
# in: a 2xx is a promise (ARCHITECTURE rule 12).

ENDPOINT_FUZZ = settings(FUZZ, max_examples=60)

poison_strings = st.sampled_from([
        "\u0000", "a\u0000b", "\ud800", "x\udfff", "Olá \ud83d", "\u0000" * 3, "9" * 300,
        "c" * 65, "America", "posixrules", "America/Sao_Paulo", "+5511987654321",
        "ana@example.com", "2031-01-10T10:00:00-03:00", "outgoing", "resolved",
        "9999-12-31T23:59:59-23:59", "0001-01-01T00:00:00+23:59",
])
poison_text = st.one_of(
    st.text(st.characters(exclude_categories=()), max_size=20),  # surrogates too
    poison_strings,
)
poison_scalar = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(allow_nan=False, allow_infinity=False), poison_text,
)


def _nested(levels: int) -> Any:
    doc: Any = "fundo"
    for n in range(levels):
        doc = {"a": doc} if n % 2 else [doc]
    return doc


deep_json = st.integers(min_value=30, max_value=400).map(_nested)
poison_json = st.one_of(
    st.recursive(
        poison_scalar,
        lambda inner: st.one_of(
            st.lists(inner, max_size=3), st.dictionaries(poison_text, inner, max_size=3)
        ),
        max_leaves=8,
    ),
    deep_json,
)
# What replaces a field: half the time a known poison string (so the rare
# values are not left to chance), else any JSON, deep nesting included.
poison_value = st.one_of(poison_strings, poison_strings, poison_json, deep_json)
# What an HTTP client can put in a header or a form (no surrogates: they have
# no encoding on the wire; NUL and Latin-1 do).
wire_text = st.one_of(
    st.text(st.characters(max_codepoint=0xFF), max_size=20),
    st.sampled_from(["\u0000", "k" * 252, "k" * 300, "SM" + "a" * 200, "é"]),
)


@st.composite
def mutated(draw: st.DrawFn, base: dict[str, Any], paths: list[tuple[Any, ...]]) -> Any:
    """`base` with a few values at `paths` replaced, deleted or added."""
    doc = copy.deepcopy(base)
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        path = draw(st.sampled_from(paths))
        parent: Any = doc
        for key in path[:-1]:
            try:
                parent = parent[key]
            except (KeyError, IndexError, TypeError):
                parent = None
                break
        if not isinstance(parent, dict | list):
            continue
        action = draw(st.sampled_from(["replace", "replace", "delete", "extra"]))
        key = path[-1]
        if isinstance(parent, list):
            if isinstance(key, int) and key < len(parent):
                parent[key] = draw(poison_value)
        elif action == "replace":
            parent[key] = draw(poison_value)
        elif action == "delete":
            parent.pop(key, None)
        else:
            parent[draw(poison_text)] = draw(poison_json)
    return doc


def drain_and_run_tasks(redis_client: Any) -> int:
    """Run every queued inbound/inbox task through the function its worker
    task calls (workers/tasks/*.py), on the real database; any exception is
    a message accepted and then lost. Returns how many ran."""
    import base64
    import json

    from shared.core.config import get_settings
    from shared.core.db import session_scope
    from shared.core.models import Message
    from shared.inbound.filing import DuplicateDelivery, file_inbound_message
    from shared.inbox.sync import handle_inbox_event
    from shared.outbound.status_updates import apply_status_update
    from shared.scheduling.appointments import apply_appointment_event

    ran = 0
    for queue in ("inbound", "inbox"):
        while (raw := redis_client.rpop(queue)) is not None:
            envelope = json.loads(raw)  # kombu's own serializer is the stdlib's
            args, _kwargs, _embed = json.loads(base64.b64decode(envelope["body"]))
            name = envelope["headers"]["task"]
            ran += 1
            if name == "clinicq.inbound.process":
                try:
                    with session_scope() as session:
                        file_inbound_message(session, args[0], args[1])
                except DuplicateDelivery:
                    pass
                with session_scope() as session:
                    assert session.get(Message, uuid.UUID(args[0])) is not None or (
                        args[1].get("idempotency_key") or args[1].get("provider_message_id")
                    ), args[1]
            elif name == "clinicq.inbound.appointment_event":
                with session_scope() as session:
                    apply_appointment_event(session, args[1], get_settings())
            elif name == "clinicq.inbound.status_update":
                with session_scope() as session:
                    apply_status_update(session, args[0])
            elif name == "clinicq.inbox.event":
                handle_inbox_event(args[0])
            else:  # pragma: no cover - a new task kind needs a line here
                raise AssertionError(f"unexpected task {name}")
    return ran


def check_any(response: Any, accepted: tuple[int, ...]) -> None:
    """Never a 5xx; a 4xx is JSON with an error, a 400 names its field; a
    2xx is one of the endpoint's documented answers."""
    OUTCOMES[response.status_code] = OUTCOMES.get(response.status_code, 0) + 1
    assert response.status_code < 500, (response.status_code, response.data[:500])
    if 400 <= response.status_code < 500:
        doc = orjson.loads(response.data)
        assert isinstance(doc.get("error"), str) and doc["error"], doc
        if response.status_code == 400:
            assert isinstance(doc.get("field"), str) and doc["field"], doc
    else:
        assert response.status_code in accepted, (response.status_code, response.data[:500])


@pytest.fixture
def api_auth() -> dict[str, str]:
    from ingest.api.auth import generate_api_key, hash_api_key
    from shared.core.db import session_scope
    from shared.core.models import ApiKey

    key = generate_api_key()
    with session_scope() as s:
        s.add(ApiKey(name="fuzz", key_hash=hash_api_key(key), scopes=["intake", "send", "read", "admin"]))
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
def every_client(settings: Any) -> Any:
    """The real app with every endpoint configured (provider and inbox secrets)."""
    from ingest.app import create_app
    from tests.integration.test_webhook_contract import with_provider_secrets

    app = create_app(with_provider_secrets(settings).model_copy(update={
        "CHATWOOT_WEBHOOK_TOKEN": "fuzz-cw", "ROCKETCHAT_LIVECHAT_TOKEN": "fuzz-rc"}))
    app.testing = True
    return app.test_client()


REST_BODIES: dict[str, dict[str, Any]] = {
    "/api/messages": {"to": "+5511987654321", "text": "Olá", "channel": "sms"},
    "/api/send-email": {"to": "ana@example.com", "template": "appointment_confirmation",
                        "data": {"paciente_nome": "Ana", "data": "10/12/2031",
                                 "horario": "14:00", "medico_nome": "Silva"}},
    "/api/send-message": {"channel": "whatsapp", "to": "+5511987654321", "message": "oi"},
    "/api/appointments": {"external_id": "fz-1", "contact": {"phone": "+5511987654321",
                                                             "name": "Ana"},
                          "starts_at": "2031-01-10T10:00:00-03:00", "timezone": "UTC",
                          "professional": "Dra. Lima", "notes": "jejum"},
}
REST_PATHS = [
    ("to",), ("text",), ("channel",), ("message",), ("subject",), ("template",), ("data",),
    ("data", "paciente_nome"), ("idempotency_key",), ("external_id",), ("contact",),
    ("contact", "name"), ("contact", "phone"), ("starts_at",), ("timezone",),
    ("professional",), ("notes",), ("duration_minutes",),
]


@ENDPOINT_FUZZ
@given(data=st.data(), path=st.sampled_from(sorted(REST_BODIES)))
def test_rest_api_never_5xx_and_keeps_what_it_accepts(
    every_client, api_auth, data: st.DataObject, path: str
) -> None:
    from shared.core.db import session_scope
    from shared.core.models import Appointment, Message

    doc = data.draw(mutated(REST_BODIES[path], REST_PATHS))
    headers = {**api_auth, "Content-Type": "application/json"}
    if data.draw(st.booleans()):
        headers["Idempotency-Key"] = data.draw(wire_text)
    response = every_client.post(path, data=_dumps(doc), headers=headers)
    check_any(response, (200, 201, 202))
    if response.status_code < 300:
        body = orjson.loads(response.data)
        with session_scope() as s:
            if path == "/api/appointments":
                assert s.get(Appointment, uuid.UUID(body["id"])) is not None
            else:
                assert s.get(Message, uuid.UUID(body["message_id"])) is not None


@ENDPOINT_FUZZ
@given(data=st.data())
def test_appointment_patch_and_contacts_api_never_5xx(
    every_client, api_auth, data: st.DataObject
) -> None:
    created = every_client.post("/api/appointments", json=REST_BODIES["/api/appointments"],
                                headers=api_auth)
    appointment = created.get_json()
    change = data.draw(mutated({"notes": "x", "timezone": "UTC", "status": "confirmed",
                                "starts_at": "2031-01-11T10:00:00-03:00"},
                               [("notes",), ("timezone",), ("status",), ("starts_at",),
                                ("duration_minutes",), ("location",)]))
    check_any(every_client.patch(f"/api/appointments/{appointment['id']}", data=_dumps(change),
                                 headers={**api_auth, "Content-Type": "application/json"}),
              (200,))
    query = data.draw(st.dictionaries(st.sampled_from(["phone", "email", "status", "limit",
                                                       "after_id"]), wire_text, max_size=3))
    check_any(every_client.get("/api/contacts", query_string=query, headers=api_auth), (200,))
    check_any(every_client.get("/api/merge-candidates", query_string=query, headers=api_auth),
              (200,))
    merge = data.draw(mutated({"other_contact_id": str(uuid.uuid4())},
                              [("other_contact_id",)]))
    check_any(every_client.post(f"/api/contacts/{appointment['contact_id']}/merge",
                                data=_dumps(merge), headers=api_auth), (200,))


@ENDPOINT_FUZZ
@given(message_id=st.one_of(st.uuids().map(str), st.text(max_size=40)),
       token=st.binary(max_size=40))
def test_status_url_never_5xx(every_client, message_id: str, token: bytes) -> None:
    from urllib.parse import quote, quote_from_bytes

    response = every_client.get(
        f"/api/messages/{quote(message_id, safe='')}",
        query_string="token=" + quote_from_bytes(token),
    )
    check_any(response, (200,))


@settings(FUZZ, max_examples=80)
@given(data=st.data())
def test_twilio_webhooks_signed_never_5xx_and_file_what_they_accept(
    every_client, redis_client, data: st.DataObject
) -> None:
    from tests.integration.test_twilio_inbound import sms_form, whatsapp_form
    from tests.integration.test_webhook_contract import twilio_request

    status_callback = data.draw(st.booleans())
    if status_callback:
        form = {"MessageSid": "SM" + uuid.uuid4().hex, "MessageStatus": "delivered",
                "ErrorCode": "", "ErrorMessage": "", "To": "+5511987654321"}
        path = "/webhooks/twilio/status"
    else:
        form = data.draw(st.sampled_from([sms_form, whatsapp_form]))()
        path = "/webhooks/twilio"
    for _ in range(data.draw(st.integers(min_value=1, max_value=4))):
        key = data.draw(st.one_of(st.sampled_from(sorted(form) + [
            "ProfileName", "ButtonPayload", "ButtonText", "Latitude", "Longitude", "Label",
            "ReferralHeadline", "MediaUrl0", "OriginalRepliedMessageSid"]), wire_text))
        form[key] = data.draw(wire_text)
    body, headers = twilio_request(form, path=path)
    check_any(every_client.post(path, data=body, headers=headers), (200,))
    drain_and_run_tasks(redis_client)


META_PATHS = [
    ("entry",), ("entry", 0, "changes"), ("entry", 0, "changes", 0, "value"),
    ("entry", 0, "changes", 0, "value", "messages"),
    ("entry", 0, "changes", 0, "value", "messages", 0),
    ("entry", 0, "changes", 0, "value", "messages", 0, "id"),
    ("entry", 0, "changes", 0, "value", "messages", 0, "from"),
    ("entry", 0, "changes", 0, "value", "messages", 0, "type"),
    ("entry", 0, "changes", 0, "value", "messages", 0, "text"),
    ("entry", 0, "changes", 0, "value", "messages", 0, "text", "body"),
    ("entry", 0, "changes", 0, "value", "messages", 0, "context"),
    ("entry", 0, "changes", 0, "value", "messages", 0, "referral"),
    ("entry", 0, "changes", 0, "value", "contacts", 0, "profile", "name"),
    ("entry", 0, "changes", 0, "value", "statuses"),
    ("entry", 0, "changes", 0, "value", "statuses", 0, "id"),
    ("entry", 0, "changes", 0, "value", "statuses", 0, "errors"),
    ("entry", 0, "changes", 0, "value", "statuses", 0, "biz_opaque_callback_data"),
]


@settings(FUZZ, max_examples=80)
@given(data=st.data())
def test_meta_webhook_signed_never_5xx_and_files_what_it_accepts(
    every_client, redis_client, data: st.DataObject
) -> None:
    from tests.integration.test_meta_webhook import envelope, status, text_message
    from tests.integration.test_webhook_contract import meta_request

    base = envelope(text_message())
    base["entry"][0]["changes"][0]["value"]["statuses"] = [status("wamid.X", "delivered")]
    doc = data.draw(mutated(base, META_PATHS))
    body, headers = meta_request(_dumps(doc))
    check_any(every_client.post("/webhooks/meta", data=body, headers=headers), (200,))
    drain_and_run_tasks(redis_client)


CHATWOOT = {"event": "message_created", "message_type": "outgoing", "id": 41, "private": False,
            "content": "Olá! Temos horário amanhã.", "conversation": {"id": 7, "display_id": 7},
            "sender": {"name": "Rita"}, "status": "resolved", "display_id": 7,
            "updated_at": "2031-01-01T10:00:00Z"}
ROCKETCHAT = {"_id": "room1", "type": "Message", "visitor": {"_id": "v1"}, "closedAt": "x",
              "messages": [{"_id": "m1", "msg": "Olá!", "u": {"_id": "a1", "name": "Rita"}}]}


@settings(FUZZ, max_examples=80)
@given(data=st.data(), provider=st.sampled_from(["chatwoot", "rocketchat"]))
def test_inbox_webhooks_never_5xx_and_run_what_they_accept(
    every_client, redis_client, data: st.DataObject, provider: str
) -> None:
    if provider == "chatwoot":
        doc = data.draw(mutated(
            {**CHATWOOT, "event": data.draw(st.sampled_from(
                ["message_created", "conversation_status_changed"]))},
            [("event",), ("message_type",), ("id",), ("content",), ("conversation",),
             ("conversation", "display_id"), ("sender",), ("sender", "name"), ("display_id",),
             ("updated_at",), ("attachments",)]))
        response = every_client.post("/webhooks/chatwoot?token=fuzz-cw", data=_dumps(doc),
                                     content_type="application/json")
    else:
        doc = data.draw(mutated(
            {**ROCKETCHAT, "type": data.draw(st.sampled_from(["Message", "LivechatSession"]))},
            [("_id",), ("type",), ("visitor",), ("messages",), ("messages", 0),
             ("messages", 0, "_id"), ("messages", 0, "msg"), ("messages", 0, "u"),
             ("messages", 0, "u", "name"), ("messages", 0, "attachments")]))
        response = every_client.post("/webhooks/rocketchat", data=_dumps(doc), headers={
            "X-RocketChat-Livechat-Token": "fuzz-rc", "Content-Type": "application/json"})
    check_any(response, (200,))
    drain_and_run_tasks(redis_client)


@settings(FUZZ, max_examples=80)
@given(data=st.data(), doc=mutated_seed())
def test_webhook_202_is_filed_by_the_worker_function(
    client, redis_client, data: st.DataObject, doc: dict[str, Any]
) -> None:
    # Poison values at the seed's fields, signed: every 202 must go in.
    for path in data.draw(st.lists(st.sampled_from(PATHS[4:12]), max_size=3)):
        doc.setdefault(path[0], {})
        if isinstance(doc[path[0]], dict):
            doc[path[0]][path[1]] = data.draw(poison_value)
    body = _dumps(doc)
    headers = {**sign_headers(body, msg_id=data.draw(st.one_of(
        st.none(), st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=200,
                           max_size=260)))), "Content-Type": "application/json"}
    response = client.post("/api/webhook", data=body, headers=headers)
    check_any(response, (202,))
    new = response.status_code == 202 and not orjson.loads(response.data).get("duplicate")
    assert drain_and_run_tasks(redis_client) == (1 if new else 0)


META_DM_PATHS = [
    ("object",), ("entry",), ("entry", 0), ("entry", 0, "id"), ("entry", 0, "messaging"),
    ("entry", 0, "messaging", 0), ("entry", 0, "messaging", 0, "sender"),
    ("entry", 0, "messaging", 0, "sender", "id"), ("entry", 0, "messaging", 0, "timestamp"),
    ("entry", 0, "messaging", 0, "message"), ("entry", 0, "messaging", 0, "message", "mid"),
    ("entry", 0, "messaging", 0, "message", "text"),
    ("entry", 0, "messaging", 0, "message", "quick_reply"),
    ("entry", 0, "messaging", 0, "message", "attachments"),
    ("entry", 0, "messaging", 0, "message", "attachments", 0, "payload"),
    ("entry", 0, "messaging", 0, "message", "is_echo"),
    ("entry", 0, "messaging", 1, "postback"), ("entry", 0, "messaging", 1, "postback", "mid"),
    ("entry", 0, "messaging", 2, "delivery"), ("entry", 0, "messaging", 2, "delivery", "mids"),
    ("entry", 0, "messaging", 2, "delivery", "watermark"),
    ("entry", 0, "messaging", 3, "read"), ("entry", 0, "messaging", 3, "read", "watermark"),
]


@settings(FUZZ, max_examples=80)
@given(data=st.data(), obj=st.sampled_from(["page", "instagram"]))
def test_meta_dm_webhook_signed_never_5xx_and_files_what_it_accepts(
    every_client, redis_client, data: st.DataObject, obj: str
) -> None:
    """Messenger / Instagram bodies (objects `page`, `instagram`), mutated."""
    from tests.integration.test_messenger_instagram_e2e import dm_envelope, dm_message
    from tests.integration.test_webhook_contract import meta_request

    person = "24012345678901234"
    message = dm_message(person, "Oi", obj=obj, attachments=[
        {"type": "image", "payload": {"url": "https://cdn.example/a.jpg"}}])
    postback = {"sender": {"id": person}, "recipient": {"id": "1"}, "timestamp": 1700000000000,
                "postback": {"title": "Confirmar", "payload": "CONFIRM_x", "mid": "m_pb"}}
    delivery = {"sender": {"id": person}, "recipient": {"id": "1"},
                "delivery": {"mids": ["m_1"], "watermark": 1700000000000}}
    read = {"sender": {"id": person}, "recipient": {"id": "1"}, "timestamp": 1700000000000,
            "read": {"watermark": 1700000000000, "mid": "m_1"}}
    doc = data.draw(mutated(dm_envelope(obj, message, postback, delivery, read), META_DM_PATHS))
    body, headers = meta_request(_dumps(doc))
    check_any(every_client.post("/webhooks/meta", data=body, headers=headers), (200,))
    drain_and_run_tasks(redis_client)
