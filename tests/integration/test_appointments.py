"""Appointment intake: REST API (API keys) and webhook events, scheduled rows."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import time_machine
from sqlalchemy import func, select

from ingest.api.auth import generate_api_key, hash_api_key
from shared.core.db import session_scope
from shared.core.models import ApiKey, Appointment, Contact, ContactIdentity, ScheduledMessage
from tests.helpers import dumps, sign_headers, wait_for

SP = ZoneInfo("America/Sao_Paulo")
# A Tuesday morning in São Paulo, outside quiet hours.
NOW = datetime(2026, 12, 1, 10, 0, tzinfo=SP)


@pytest.fixture
def api_key() -> str:
    key = generate_api_key()
    with session_scope() as s:
        s.add(ApiKey(name="booking-system", key_hash=hash_api_key(key), scopes=["intake", "read"]))
    return key


@pytest.fixture
def auth(api_key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"}


@pytest.fixture
def clock():
    with time_machine.travel(NOW, tick=True) as traveller:
        yield traveller


def booking(**overrides):
    body = {
        "external_id": "agenda-123",
        "contact": {
            "name": "João Silva",
            "phone": "(11) 99999-9999",
            "email": "Joao@Email.com",
            "cpf": "529.982.247-25",
        },
        "professional": "Dra. Ana Souza",
        "location": "Unidade Paulista",
        "address": "Av. Paulista, 1000",
        "starts_at": "2026-12-03T14:30:00-03:00",
        "duration_minutes": 40,
        "notes": "primeira consulta",
    }
    body.update(overrides)
    return body


def post(client, auth, body, path="/api/appointments"):
    return client.post(path, data=dumps(body), headers={**auth, "Content-Type": "application/json"})


def rows(appointment_id) -> dict[str, ScheduledMessage]:
    with session_scope() as s:
        return {
            r.kind: r
            for r in s.scalars(
                select(ScheduledMessage).where(
                    ScheduledMessage.appointment_id == uuid.UUID(str(appointment_id))
                )
            )
        }


def test_booking_creates_contact_appointment_and_scheduled_rows(client, auth, clock) -> None:
    resp = post(client, auth, booking())
    assert resp.status_code == 201, resp.get_json()
    body = resp.get_json()
    assert body["created"] is True and body["status"] == "scheduled" and body["version"] == 1
    assert body["starts_at"] == "2026-12-03T14:30:00-03:00"
    assert body["timezone"] == "America/Sao_Paulo"

    with session_scope() as s:
        appt = s.get(Appointment, uuid.UUID(body["id"]))
        contact = s.get(Contact, appt.contact_id)
        assert contact.name == "João Silva"
        assert contact.cpf_masked == "***.982.247-**" and contact.cpf_clear is None
        identities = {(i.kind, i.value) for i in s.scalars(select(ContactIdentity))}
    assert identities == {("phone", "+5511999999999"), ("email", "joao@email.com")}

    r = rows(body["id"])
    assert set(r) == {"confirmation_email", "confirmation_sms", "reminder_24h", "reminder_1h", "survey"}
    start = datetime(2026, 12, 3, 14, 30, tzinfo=SP)
    assert r["confirmation_email"].status == "pending" and r["confirmation_email"].channel == "email"
    assert r["confirmation_email"].template == "confirmacao_agendamento"
    assert abs(r["confirmation_sms"].due_at - NOW) < timedelta(seconds=5)
    assert r["confirmation_sms"].template == "confirmacao"
    assert r["reminder_24h"].due_at == start - timedelta(hours=24)
    assert (r["reminder_24h"].channel, r["reminder_24h"].template) == ("sms", "lembrete")
    assert r["reminder_1h"].due_at == start - timedelta(hours=1)
    assert r["reminder_1h"].channel == "whatsapp"
    # SURVEY_URL unset in tests: recorded, visibly, as skipped.
    assert r["survey"].status == "skipped" and r["survey"].reason == "SURVEY_URL not set"
    assert {s["kind"] for s in body["scheduled_messages"]} == set(r)


def test_same_booking_twice_is_idempotent(client, auth, clock) -> None:
    first = post(client, auth, booking()).get_json()
    again = post(client, auth, booking())
    assert again.status_code == 200
    body = again.get_json()
    assert body["id"] == first["id"] and body["created"] is False and body["version"] == 1
    with session_scope() as s:
        assert s.scalar(select(func.count()).select_from(Appointment)) == 1
        assert s.scalar(select(func.count()).select_from(ScheduledMessage)) == 5


def test_upsert_with_new_time_reschedules(client, auth, clock) -> None:
    first = post(client, auth, booking()).get_json()
    moved = post(client, auth, booking(starts_at="2026-12-04T09:00:00-03:00")).get_json()
    assert moved["id"] == first["id"] and moved["version"] == 2
    r = rows(first["id"])
    assert r["reminder_24h"].due_at == datetime(2026, 12, 3, 9, 0, tzinfo=SP)
    assert r["reminder_24h"].appointment_version == 2


@pytest.mark.parametrize(
    ("override", "field", "message"),
    [
        ({"starts_at": "2026-11-30T10:00:00-03:00"}, "starts_at", "in the past"),
        ({"starts_at": "2026-12-03T14:30:00"}, "starts_at", "UTC offset"),
        ({"starts_at": "amanhã"}, "starts_at", ""),
        ({"timezone": "America/Atlantida"}, "timezone", "unknown IANA time zone"),
        ({"contact": {"name": "Sem Contato"}}, "contact", "no reachable contact"),
        ({"contact": {"phone": "123", "email": "not-an-email"}}, "contact", "no reachable contact"),
        ({"external_id": ""}, "external_id", ""),
        ({"duration_minutes": 0}, "duration_minutes", ""),
    ],
)
def test_bad_booking_is_400_naming_the_field(client, auth, clock, override, field, message) -> None:
    resp = post(client, auth, booking(**override))
    assert resp.status_code == 400
    body = resp.get_json()
    assert body["field"] == field
    assert message in body["error"]
    with session_scope() as s:
        assert s.scalar(select(func.count()).select_from(Appointment)) == 0


def test_api_key_required(client, clock) -> None:
    resp = client.post("/api/appointments", data=dumps(booking()), headers={"Content-Type": "application/json"})
    assert resp.status_code == 401 and resp.get_json()["field"] == "Authorization"
    resp = post(client, {"Authorization": "Bearer cq_wrong"}, booking())
    assert resp.status_code == 401


def test_patch_reschedules_pending_rows_in_same_transaction(client, auth, clock) -> None:
    created = post(client, auth, booking()).get_json()
    resp = client.patch(
        f"/api/appointments/{created['id']}",
        data=dumps({"starts_at": "2026-12-05T15:00:00-03:00", "professional": "Dr. Paulo"}),
        headers={**auth, "Content-Type": "application/json"},
    )
    assert resp.status_code == 200, resp.get_json()
    body = resp.get_json()
    assert body["version"] == 2 and body["professional"] == "Dr. Paulo"
    r = rows(created["id"])
    start = datetime(2026, 12, 5, 15, 0, tzinfo=SP)
    assert r["reminder_24h"].due_at == start - timedelta(hours=24)
    assert r["reminder_1h"].due_at == start - timedelta(hours=1)
    assert {row.appointment_version for row in r.values()} == {2}

    # Detail-only change (notes) does not bump the version.
    resp = client.patch(
        f"/api/appointments/{created['id']}",
        data=dumps({"notes": "trazer exames"}),
        headers={**auth, "Content-Type": "application/json"},
    )
    assert resp.get_json()["version"] == 2


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"starts_at": "2026-11-01T10:00:00-03:00"}, "starts_at"),
        ({"starts_at": "2026-12-05T15:00:00"}, "starts_at"),
        ({"timezone": "Mars/Olympus"}, "timezone"),
        ({"status": "cancelled"}, "status"),
        ({"colour": "blue"}, "colour"),
        ({}, "body"),
    ],
)
def test_bad_patch_is_400_naming_the_field(client, auth, clock, body, field) -> None:
    created = post(client, auth, booking()).get_json()
    resp = client.patch(
        f"/api/appointments/{created['id']}", data=dumps(body), headers={**auth, "Content-Type": "application/json"}
    )
    assert resp.status_code == 400
    assert resp.get_json()["field"] == field


def test_unknown_appointment_is_404(client, auth) -> None:
    assert client.get(f"/api/appointments/{uuid.uuid4()}", headers=auth).status_code == 404
    assert client.get("/api/appointments/not-a-uuid", headers=auth).status_code == 404
    assert client.post(f"/api/appointments/{uuid.uuid4()}/cancel", headers=auth).status_code == 404


def test_cancel_cancels_pending_rows_and_sends_notice_if_configured(settings, auth, clock) -> None:
    from ingest.app import create_app

    app = create_app(settings.model_copy(update={"CANCELLATION_NOTICE_CHANNELS": ["sms"]}))
    client = app.test_client()
    created = post(client, auth, booking()).get_json()
    resp = client.post(f"/api/appointments/{created['id']}/cancel", headers=auth)
    assert resp.status_code == 200
    body = resp.get_json()
    assert body["status"] == "cancelled" and body["version"] == 2 and body["changed"] is True
    r = rows(created["id"])
    assert r["reminder_24h"].status == "cancelled" and r["reminder_1h"].status == "cancelled"
    assert r["survey"].status == "skipped"  # already final: left as it was
    notice = r["cancellation_sms"]
    assert (notice.status, notice.template, notice.channel) == ("pending", "cancelamento", "sms")
    # Cancelling twice changes nothing.
    again = client.post(f"/api/appointments/{created['id']}/cancel", headers=auth).get_json()
    assert again["changed"] is False and again["version"] == 2
    # A cancelled appointment cannot be moved.
    resp = client.patch(
        f"/api/appointments/{created['id']}",
        data=dumps({"starts_at": "2026-12-09T10:00:00-03:00"}),
        headers={**auth, "Content-Type": "application/json"},
    )
    assert resp.status_code == 409


def test_reminder_already_passed_at_booking_is_skipped(client, auth, clock) -> None:
    body = post(client, auth, booking(starts_at="2026-12-01T18:00:00-03:00")).get_json()
    r = rows(body["id"])
    assert r["reminder_24h"].status == "skipped"
    assert "already passed" in r["reminder_24h"].reason
    assert r["reminder_1h"].status == "pending"
    assert r["reminder_1h"].due_at == datetime(2026, 12, 1, 17, 0, tzinfo=SP)


def test_get_shows_scheduled_messages_with_statuses(client, auth, clock) -> None:
    created = post(client, auth, booking()).get_json()
    resp = client.get(f"/api/appointments/{created['id']}", headers=auth)
    assert resp.status_code == 200
    body = resp.get_json()
    kinds = {s["kind"]: s for s in body["scheduled_messages"]}
    assert kinds["reminder_24h"]["due_at"] == "2026-12-02T14:30:00-03:00"
    assert kinds["reminder_24h"]["status"] == "pending" and kinds["reminder_24h"]["message_status"] is None


# --- the same events through POST /api/webhook ----------------------------------------


def webhook(client, doc):
    body = dumps(doc)
    return client.post("/api/webhook", data=body, headers=sign_headers(body))


def test_webhook_appointment_events_apply_through_a_real_worker(client, celery_worker) -> None:
    celery_worker(queues="inbound")
    # 14:30 in São Paulo three days ahead: its reminders fall in allowed hours.
    day = (datetime.now(SP) + timedelta(days=3)).date()
    starts = datetime(day.year, day.month, day.day, 14, 30, tzinfo=SP).astimezone(UTC)
    doc = {"type": "appointment.created", "appointment": booking(starts_at=starts.isoformat())}
    resp = webhook(client, doc)
    assert resp.status_code == 202, resp.get_json()

    def appointment():
        with session_scope() as s:
            a = s.scalar(select(Appointment).where(Appointment.external_id == "agenda-123"))
            if a is not None:
                s.expunge(a)
            return a

    appt = wait_for(appointment)
    assert appt.starts_at == starts and appt.version == 1
    assert len(rows(appt.id)) == 5

    moved = starts + timedelta(days=1)
    doc = {"type": "appointment.updated", "appointment": booking(starts_at=moved.isoformat())}
    assert webhook(client, doc).status_code == 202
    wait_for(lambda: appointment().version == 2)
    assert rows(appt.id)["reminder_24h"].due_at == moved - timedelta(hours=24)

    doc = {"type": "appointment.cancelled", "appointment": {"external_id": "agenda-123"}}
    assert webhook(client, doc).status_code == 202
    wait_for(lambda: appointment().status == "cancelled")
    assert rows(appt.id)["reminder_1h"].status == "cancelled"


@pytest.mark.parametrize(
    ("doc", "field"),
    [
        ({"type": "appointment.created"}, "appointment"),
        ({"type": "appointment.created", "appointment": booking(starts_at="2020-01-01T10:00:00-03:00")}, "appointment.starts_at"),
        ({"type": "appointment.created", "appointment": booking(starts_at="2030-01-01T10:00:00")}, "appointment.starts_at"),
        ({"type": "appointment.updated", "appointment": booking(starts_at="2030-01-01T10:00:00Z", timezone="Nowhere/City")}, "appointment.timezone"),
        ({"type": "appointment.created", "appointment": booking(starts_at="2030-01-01T10:00:00Z", contact={})}, "appointment.contact"),
        ({"type": "appointment.cancelled", "appointment": {}}, "appointment.external_id"),
    ],
)
def test_webhook_bad_appointment_is_400_naming_the_field(client, redis_client, doc, field) -> None:
    resp = webhook(client, doc)
    assert resp.status_code == 400
    assert resp.get_json()["field"] == field
    assert redis_client.llen("inbound") == 0  # nothing enqueued


def test_new_time_needs_confirming_again(client, auth, clock) -> None:
    created = post(client, auth, booking()).get_json()
    headers = {**auth, "Content-Type": "application/json"}
    confirmed = client.patch(f"/api/appointments/{created['id']}", data=dumps({"status": "confirmed"}), headers=headers)
    assert confirmed.get_json()["status"] == "confirmed" and confirmed.get_json()["version"] == 1
    moved = client.patch(
        f"/api/appointments/{created['id']}", data=dumps({"starts_at": "2026-12-07T10:00:00-03:00"}), headers=headers
    ).get_json()
    assert moved["status"] == "scheduled" and moved["version"] == 2


def test_non_json_and_malformed_bodies(client, auth, clock) -> None:
    resp = client.post("/api/appointments", data="external_id=1", headers={**auth, "Content-Type": "application/x-www-form-urlencoded"})
    assert resp.status_code == 415 and resp.get_json()["field"] == "Content-Type"
    resp = client.post("/api/appointments", data=b"{not json", headers={**auth, "Content-Type": "application/json"})
    assert resp.status_code == 400 and resp.get_json()["field"] == "body"
    resp = client.post("/api/appointments", data=b"[1, 2]", headers={**auth, "Content-Type": "application/json"})
    assert resp.status_code == 400 and resp.get_json()["field"] == "body"
    resp = post(client, auth, booking(contact={"phone": "+5511999999999", "cpf": "111.111.111-12"}))
    assert resp.status_code == 201
    assert any("cpf" in w for w in resp.get_json()["warnings"])
