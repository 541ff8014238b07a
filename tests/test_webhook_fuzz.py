"""Hypothesis-generated requests against the real app (real Redis behind it):
structured mutations of the seed payload, arbitrary JSON and arbitrary bytes,
signed and unsigned, with odd headers. Never a 5xx; every 4xx is JSON with an
`error`; every 2xx is a 202 with a message id.

The three tests together run 650 generated requests."""

from __future__ import annotations

import copy
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import LEGACY_SECRET, OLD_SIGNING_SECRET, SIGNING_SECRET, seed_payload

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
