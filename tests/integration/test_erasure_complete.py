"""LGPD erasure leaves nothing behind, anywhere.

A patient books an appointment (with notes), writes an urgent SMS (team
alert e-mail, on-call SMS, then the on-call re-alert), asks to reschedule
(`pedido_paciente` to the team), fills the website form, and the booking
system sends them an e-mail and an SMS through the API with idempotency keys
built from their address. Real ingest, real Celery workers, real PostgreSQL
and Redis. After `DELETE /api/contacts/{id}` every text, varchar and JSON
column of every table (found through information_schema, so a column added
later is searched too) and every Redis key are searched for the patient's
name, phone (E.164 and digits), e-mail and a phrase of their message.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select, text

from ingest.api.auth import generate_api_key, hash_api_key
from shared.core.db import get_engine, session_scope
from shared.core.models import ApiKey, ContactIdentity, Message
from shared.inbound.automations import realert_unanswered_urgent
from tests.helpers import dumps, sign_headers, wait_for

NAME = "Quitéria Zanforlin"
PHONE = "+5511987651234"
EMAIL = "quiteria.zanforlin@example.org"
PHRASE = "tireoide zumbindo feito abelha"

NEEDLES = [NAME, "Zanforlin", PHONE, PHONE[1:], "987651234", EMAIL, "zanforlin@", PHRASE, "abelha"]

TEAM_ENV = {
    "EMAIL_MEDICO": "medico@clinicateste.com.br",
    "EMAIL_FINANCEIRO": "financeiro@clinicateste.com.br",
    "EMAIL_SUPORTE": "suporte@clinicateste.com.br",
    "ONCALL_PHONE": "+5511977776666",
    "AUTO_ACK_ENABLED": "true",
    "QUIET_HOURS_CHANNELS": "",
    "CLINIC_NAME": "Clinica Teste",
    "RATE_LIMIT_SMS": "1000/second",
    "RATE_LIMIT_EMAIL": "1000/second",
}
FINAL = {"sent", "delivered", "read", "failed", "skipped", "cancelled", "unknown"}


@pytest.fixture
def api_headers() -> dict[str, str]:
    key = generate_api_key()
    with session_scope() as s:
        s.add(ApiKey(name="booking-system", key_hash=hash_api_key(key), scopes=["intake", "send", "read", "admin"]))
    return {"Authorization": f"Bearer {key}"}


def hits_in_database() -> dict[str, list[str]]:
    """needle -> ["table.column", …] over every textual column of every table."""
    with get_engine().connect() as conn:
        columns = conn.execute(
            text(
                "SELECT table_name, column_name FROM information_schema.columns"
                " WHERE table_schema = current_schema()"
                " AND data_type IN ('text', 'character varying', 'character', 'json', 'jsonb',"
                " 'ARRAY', 'bytea')"
                " ORDER BY table_name, column_name"
            )
        ).all()
        assert len(columns) > 20  # the probe really sees the schema
        found: dict[str, list[str]] = {}
        for table, column in columns:
            for needle in NEEDLES:
                hit = conn.scalar(
                    text(
                        f'SELECT EXISTS (SELECT 1 FROM "{table}"'
                        f' WHERE strpos(lower("{column}"::text), lower(:needle)) > 0)'
                    ),
                    {"needle": needle},
                )
                if hit:
                    found.setdefault(needle, []).append(f"{table}.{column}")
    return found


def hits_in_redis(client: Any) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for key in client.scan_iter(count=1000):
        name = key.decode(errors="replace")
        value = client.get(key) if client.type(key) == b"string" else b""
        blob = f"{name} {(value or b'').decode(errors='replace')}".lower()
        for needle in NEEDLES:
            if needle.lower() in blob:
                found.setdefault(needle, []).append(name)
    return found


def test_erasure_leaves_no_trace_in_any_column_or_redis_key(
    settings: Any, client: Any, api_headers: dict[str, str], celery_worker: Any, redis_client: Any
) -> None:
    from tests.integration.test_twilio_inbound import sms_form
    from tests.integration.test_webhook_contract import make_provider_client, twilio_request

    redis_client.delete("inbound", "email", "sms", "whatsapp", "inbox")
    celery_worker(queues="inbound,email,sms,whatsapp", env=TEAM_ENV)
    provider = make_provider_client(settings)
    json_headers = {**api_headers, "Content-Type": "application/json"}

    # The booking system books the visit, with notes about the patient.
    starts = (datetime.now(UTC) + timedelta(days=3)).replace(microsecond=0)
    booking = {
        "external_id": f"agenda-{uuid.uuid4().hex[:8]}",
        "contact": {"name": NAME, "phone": PHONE, "email": EMAIL},
        "professional": "Dra. Ana Souza",
        "location": "Unidade Paulista",
        "address": "Rua das Abelhas, 12 (casa da paciente)",
        "starts_at": starts.isoformat(),
        "notes": f"{NAME} relata {PHRASE}; contato {PHONE}",
    }
    resp = client.post("/api/appointments", data=dumps(booking), headers=json_headers)
    assert resp.status_code == 201, resp.get_json()
    with session_scope() as s:
        contact_id = s.scalar(
            select(ContactIdentity.contact_id).where(ContactIdentity.value == PHONE)
        )
    assert contact_id is not None

    def sms(body: str) -> None:
        raw, headers = twilio_request(sms_form(From=PHONE, Body=body))
        assert provider.post("/webhooks/twilio", data=raw, headers=headers).status_code == 200

    def inbound_count() -> int:
        with session_scope() as s:
            return len(s.scalars(select(Message.id).where(Message.direction == "inbound")).all())

    # Urgent words: team alert to the doctor, on-call SMS, acknowledgement.
    sms(f"Socorro, estou com dor no peito e falta de ar, {PHRASE}")
    wait_for(lambda: inbound_count() == 1, timeout=60)
    # "Não": a reschedule request e-mailed to the team (pedido_paciente).
    sms("Não")
    wait_for(lambda: inbound_count() == 2, timeout=60)
    # The website form, with a webhook-id the site built from the address.
    form = {
        "type": "message",
        "channel": "web",
        "contact": {"name": NAME, "phone": PHONE, "email": EMAIL},
        "message": {"text": f"Pelo site: {PHRASE}", "metadata": {"page": "/contato"}},
    }
    body = dumps(form)
    signed = sign_headers(body, msg_id=f"form-{EMAIL}")
    resp = client.post("/api/webhook", data=body, headers=signed)
    assert resp.status_code == 202, resp.get_json()
    wait_for(lambda: inbound_count() == 3, timeout=60)
    # API sends whose idempotency keys name the patient.
    for doc in (
        {"channel": "email", "to": EMAIL, "subject": f"Olá {NAME}", "text": f"Sobre {PHRASE}",
         "idempotency_key": f"aviso-{EMAIL}"},
        {"channel": "sms", "to": PHONE, "text": f"{NAME}, retorno sobre {PHRASE}",
         "idempotency_key": f"sms-{PHONE}"},
    ):
        resp = client.post("/api/messages", json=doc, headers=api_headers)
        assert resp.status_code == 202, resp.get_json()

    def outbound() -> list[Message]:
        with session_scope() as s:
            return list(s.scalars(select(Message).where(Message.direction == "outbound")))

    wait_for(lambda: {"alerta_equipe", "alerta_urgente", "pedido_paciente"}
             <= {m.template for m in outbound()}, timeout=60)
    # Nobody answered the urgent message: the on-call phone is alerted again.
    team = settings.model_copy(update={"ONCALL_PHONE": TEAM_ENV["ONCALL_PHONE"]})
    assert realert_unanswered_urgent(datetime.now(UTC) + timedelta(minutes=30), team) == 1
    wait_for(lambda: "realerta_urgente" in {m.template for m in outbound()}
             and all(m.status in FINAL for m in outbound()), timeout=60)
    alerts = [m for m in outbound() if m.purpose == "alert"]
    # Staff-addressed: no contact_id, only the patient's words to tie them to her.
    assert {"alerta_equipe", "alerta_urgente", "realerta_urgente", "pedido_paciente"} <= {
        m.template for m in alerts
    }
    assert all(m.contact_id is None for m in alerts)

    # The probe finds the patient everywhere before the erasure …
    before = hits_in_database()
    assert {NAME, PHONE, EMAIL, PHRASE} <= set(before), before
    assert EMAIL in hits_in_redis(redis_client)  # the form's webhook-id dedupe key

    resp = client.delete(f"/api/contacts/{contact_id}", headers=api_headers)
    assert resp.status_code == 200, resp.get_json()

    # … and nowhere after it.
    assert hits_in_database() == {}
    assert hits_in_redis(redis_client) == {}
