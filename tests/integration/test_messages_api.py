"""The sending REST API: API keys from the real CLI, validation naming fields,
templates strict at request time, opt-outs, idempotency, and a real worker
delivering through the outbox (no credentials configured in this suite)."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import pytest
from sqlalchemy import select

from shared.contacts.optouts import record_opt_out
from shared.core.db import session_scope
from shared.core.models import ApiKey, Contact, ContactIdentity, Message
from tests.helpers import wait_for
from tests.infra import ROOT

EMAIL_DATA = {"paciente_nome": "João", "data": "10/12/2026", "horario": "14:00", "medico_nome": "Silva"}


@pytest.fixture
def api_key() -> str:
    """A key made by the real CLI (`python -m shared.runtime.cli create-api-key`)."""
    out = subprocess.run(
        [sys.executable, "-m", "shared.runtime.cli", "create-api-key", "tests"],
        cwd=ROOT, env=os.environ.copy(), capture_output=True, text=True, timeout=60, check=True,
    )
    key = out.stdout.strip()
    assert key.startswith("cq_")
    with session_scope() as s:
        stored = s.scalar(select(ApiKey.key_hash).where(ApiKey.name == "tests"))
    assert stored and key not in stored  # hashed, never in clear
    return key


def post(client: Any, path: str, doc: Any, key: str | None) -> Any:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return client.post(path, json=doc, headers=headers)


def row(mid: str) -> Message:
    with session_scope() as s:
        msg = s.get(Message, mid)
        assert msg is not None
        s.expunge(msg)
        return msg


@pytest.mark.parametrize("path", ["/api/messages", "/api/send-email", "/api/send-message"])
def test_requires_api_key(client: Any, path: str) -> None:
    assert post(client, path, {"to": "+5511987654321", "text": "oi"}, None).status_code == 401
    resp = post(client, path, {"to": "+5511987654321", "text": "oi"}, "cq_wrong")
    assert resp.status_code == 401 and resp.get_json()["field"] == "Authorization"


def test_seed_send_email_renders_template_and_is_delivered(
    client: Any, api_key: str, celery_worker: Any
) -> None:
    celery_worker(queues="email", concurrency=1)
    resp = post(client, "/api/send-email",
                {"to": "Joao@Email.com", "template": "confirmacao_agendamento", "data": EMAIL_DATA},
                api_key)
    assert resp.status_code == 202, resp.get_json()
    body = resp.get_json()
    assert body["status"] == "queued" and body["channel"] == "email"
    assert body["status_url"].startswith(f"https://clinicq.test/api/messages/{body['message_id']}?token=")
    msg = row(body["message_id"])
    assert msg.to_address == "joao@email.com"
    assert msg.subject == "Consulta agendada: 10/12/2026 às 14:00"
    assert "Olá João" in (msg.text or "")
    wait_for(lambda: row(body["message_id"]).status == "delivered", timeout=30)
    assert row(body["message_id"]).provider == "outbox"
    status = client.get(body["status_url"].removeprefix("https://clinicq.test"))
    assert status.get_json()["status"] == "delivered"


def test_missing_template_variable_is_400_naming_it(client: Any, api_key: str) -> None:
    data = dict(EMAIL_DATA)
    del data["medico_nome"]
    resp = post(client, "/api/send-email",
                {"to": "a@b.com", "template": "confirmacao_agendamento", "data": data}, api_key)
    assert resp.status_code == 400
    assert resp.get_json()["field"] == "data.medico_nome"
    resp = post(client, "/api/messages",
                {"to": "+5511987654321", "channel": "sms", "template": "lembrete",
                 "data": {"data": "10/12", "horario": "14:00"}}, api_key)
    assert resp.status_code == 400 and resp.get_json()["field"] == "data.endereco"
    with session_scope() as s:
        assert s.scalar(select(Message.id)) is None  # nothing created


@pytest.mark.parametrize(
    "doc, field",
    [
        ({"text": "oi"}, "to"),
        ({"to": "not a phone", "text": "oi"}, "to"),
        ({"to": "+5511987654321"}, "text"),
        ({"to": "+5511987654321", "text": "oi", "template": "lembrete"}, "text"),
        ({"to": "+5511987654321", "text": "oi", "channel": "fax"}, "channel"),
        ({"to": "+5511987654321", "template": "nope", "data": {}}, "template"),
        ({"to": "+5511987654321", "template": "lembrete", "data": [1]}, "data"),
        ({"to": "a@b.com", "text": "oi", "channel": "sms"}, "to"),
        ({"to": "00000000-0000-0000-0000-000000000000", "text": "oi"}, "to"),
    ],
)
def test_bad_requests_name_the_field(client: Any, api_key: str, doc: dict[str, Any], field: str) -> None:
    resp = post(client, "/api/messages", doc, api_key)
    assert resp.status_code == 400, resp.get_json()
    assert resp.get_json()["field"] == field


def test_not_json_is_400(client: Any, api_key: str) -> None:
    resp = client.post("/api/messages", data="x", headers={"Authorization": f"Bearer {api_key}"})
    assert resp.status_code == 400 and resp.get_json()["field"] == "body"


def test_contact_id_uses_preferred_channel_and_opt_out_skips(client: Any, api_key: str) -> None:
    with session_scope() as s:
        contact = Contact(name="Ana", preferred_channel="whatsapp")
        s.add(contact)
        s.flush()
        s.add(ContactIdentity(contact_id=contact.id, kind="phone", value="+5511987654321"))
        contact_id = contact.id
    resp = post(client, "/api/messages", {"to": str(contact_id), "text": "Olá"}, api_key)
    assert resp.status_code == 202
    assert resp.get_json()["channel"] == "whatsapp"
    assert row(resp.get_json()["message_id"]).to_address == "+5511987654321"

    with session_scope() as s:
        record_opt_out(s, contact_id, "all", "SAIR", "test")
    resp = post(client, "/api/send-message",
                {"channel": "sms", "to": str(contact_id), "message": "Olá"}, api_key)
    body = resp.get_json()
    assert resp.status_code == 202 and body["status"] == "skipped"
    assert body["reason"] == "recipient opted out of sms"


def test_idempotency_key_returns_the_first_message(client: Any, api_key: str) -> None:
    doc = {"to": "+5511987654321", "text": "Olá", "idempotency_key": "booking-42"}
    first = post(client, "/api/messages", doc, api_key).get_json()
    second = post(client, "/api/messages", doc, api_key).get_json()
    assert first["message_id"] == second["message_id"]
    assert (first["duplicate"], second["duplicate"]) == (False, True)
    with session_scope() as s:
        assert len(s.scalars(select(Message.id)).all()) == 1


def test_cli_channels_lists_outbox_without_credentials() -> None:
    out = subprocess.run([sys.executable, "-m", "shared.runtime.cli", "channels"], cwd=ROOT,
                         env=os.environ.copy(), capture_output=True, text=True, timeout=60, check=True)
    lines = out.stdout.splitlines()
    assert lines[0].startswith("email: OUTBOX") and "SMTP_HOST" in lines[0]
    assert lines[1].startswith("sms: OUTBOX") and "TWILIO_ACCOUNT_SID" in lines[1]
    assert lines[2].startswith("whatsapp: OUTBOX")
