"""Validation of webhook bodies: precise 400s, warnings for optional fields."""

from __future__ import annotations

import copy
from typing import Any

import orjson
import pytest

from tests.helpers import LEGACY_SECRET, dumps, seed_payload, sign_headers


def post(client, payload: Any, headers: dict[str, str] | None = None, raw: bytes | None = None):
    body = raw if raw is not None else dumps(payload)
    hdrs = sign_headers(body)
    hdrs.update(headers or {})
    return client.post("/api/webhook", data=body, headers=hdrs)


def mutate(fn) -> dict[str, Any]:
    payload = copy.deepcopy(seed_payload())
    fn(payload)
    return payload


@pytest.mark.parametrize(
    ("name", "change", "field"),
    [
        ("missing text", lambda p: p["message"].pop("text"), "message.text"),
        ("empty text", lambda p: p["message"].update(text=""), "message.text"),
        ("blank text", lambda p: p["message"].update(text="   \n\t"), "message.text"),
        ("text not string", lambda p: p["message"].update(text=["a"]), "message.text"),
        ("text too long", lambda p: p["message"].update(text="a" * 4097), "message.text"),
        ("unknown channel", lambda p: p.update(channel="fax"), "channel"),
        ("missing channel", lambda p: p.pop("channel"), "channel"),
        ("unknown type", lambda p: p.update(type="poke"), "type"),
        ("missing type", lambda p: p.pop("type"), "type"),
        ("no contact", lambda p: p.pop("contact"), "contact"),
        ("contact not object", lambda p: p.update(contact="joao"), "contact"),
        ("no reachable contact", lambda p: p["contact"].update(phone="12", email="nope"), "contact"),
        ("no identities at all", lambda p: p.update(contact={"name": "João"}), "contact"),
        ("malformed timestamp", lambda p: p["message"].update(timestamp="20/11/2025"), "message.timestamp"),
        ("timestamp wrong type", lambda p: p["message"].update(timestamp=[1]), "message.timestamp"),
        ("message not object", lambda p: p.update(message="oi"), "message"),
    ],
)
def test_unusable_messages_get_400_naming_the_field(client, name, change, field) -> None:
    resp = post(client, mutate(change))
    assert resp.status_code == 400, (name, resp.get_json())
    body = resp.get_json()
    assert body["field"] == field, (name, body)
    assert body["error"]


def test_seed_payload_invalid_cpf_is_dropped_with_warning(client) -> None:
    resp = post(client, seed_payload())  # the seed's CPF 123.456.789-00 fails its check
    assert resp.status_code == 202
    warnings = resp.get_json()["warnings"]
    assert any("contact.cpf" in w for w in warnings)


def test_bad_email_beside_good_phone_is_dropped_with_warning(client) -> None:
    resp = post(client, mutate(lambda p: p["contact"].update(email="joao@", cpf="529.982.247-25")))
    assert resp.status_code == 202
    warnings = resp.get_json()["warnings"]
    assert warnings == ["contact.email: not a valid email address (field dropped)"]


def test_valid_cpf_no_warnings(client) -> None:
    resp = post(client, mutate(lambda p: p["contact"].update(cpf="529.982.247-25")))
    assert resp.status_code == 202
    assert "warnings" not in resp.get_json()


def test_non_json_content_type_is_415(client) -> None:
    body = b"type=message"
    headers = sign_headers(body)
    headers["Content-Type"] = "application/x-www-form-urlencoded"
    resp = client.post("/api/webhook", data=body, headers=headers)
    assert resp.status_code == 415
    assert resp.get_json()["field"] == "Content-Type"


def test_signed_invalid_json_is_400_body(client) -> None:
    resp = post(client, None, raw=b'{"type": "message",')
    assert resp.status_code == 400
    assert resp.get_json()["field"] == "body"


def test_json_array_is_400(client) -> None:
    resp = post(client, None, raw=b"[1, 2]")
    assert resp.status_code == 400


def test_body_over_limit_is_413(client, settings) -> None:
    payload = seed_payload()
    payload["message"]["metadata"] = {"pad": "x" * settings.WEBHOOK_MAX_BODY_BYTES}
    resp = post(client, payload)
    assert resp.status_code == 413
    assert resp.get_json()["field"] == "body"


def test_phone_normalized_to_e164_in_task(client, redis_client) -> None:
    import base64

    resp = post(client, mutate(lambda p: p["contact"].update(phone="(11) 98888-7777")))
    assert resp.status_code == 202
    raw = redis_client.lrange("inbound", 0, -1)[0]
    args = orjson.loads(base64.b64decode(orjson.loads(raw)["body"]))[0]
    assert args[1]["contact"]["phone"] == "+5511988887777"
    assert "cpf" not in args[1]["contact"]  # invalid CPF dropped


def test_bad_idempotency_key_is_400(client) -> None:
    body = dumps(seed_payload(webhook_secret=LEGACY_SECRET))
    resp = client.post(
        "/api/webhook",
        data=body,
        headers={"Content-Type": "application/json", "Idempotency-Key": "a" * 300},
    )
    assert resp.status_code == 400
    assert resp.get_json()["field"] == "Idempotency-Key"
