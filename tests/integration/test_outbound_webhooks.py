"""Outbound webhooks end to end: real PostgreSQL, Redis and `celery worker`
processes on the `webhooks` queue, delivering to a local receiver that
verifies every request with the `standardwebhooks` library
(tests/fakes/webhook_receiver.py).

Delivery guarantee under test: at-least-once, with the same `webhook-id` on
every attempt of an event (a worker killed mid-request makes the receiver see
that id twice; it dedupes on it)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, update

from shared.contacts.directory import ContactDetails, find_or_create_contact
from shared.contacts.optouts import record_opt_out, revoke_opt_out
from shared.core.db import session_scope
from shared.core.models import (
    Message,
    OptOut,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEvent,
)
from shared.core.webhook_events import record_event
from shared.outbound.webhook_delivery import sweep
from shared.scheduling.appointments import cancel_appointment, get_for_update
from tests.fakes.webhook_receiver import FakeWebhookReceiver
from tests.helpers import wait_for
from tests.integration.processes import WorkerProcess
from tests.integration.test_api_scopes import auth, make_key

SUPORTE = "suporte@portalclinic.com.br"
# Short timeouts and retries so outages play out in seconds.
FAST = {
    "WEBHOOK_CONNECT_TIMEOUT_SECONDS": "1",
    "WEBHOOK_READ_TIMEOUT_SECONDS": "2",
    "WEBHOOK_RETRY_BASE_SECONDS": "0.3",
    "WEBHOOK_RETRY_MAX_SECONDS": "2",
    "WEBHOOK_SWEEP_SECONDS": "1",
    "WEBHOOK_SWEEP_GRACE_SECONDS": "1",
    "EMAIL_SUPORTE": SUPORTE,
}


@pytest.fixture
def receiver() -> Iterator[FakeWebhookReceiver]:
    with FakeWebhookReceiver() as fake:
        yield fake  # type: ignore[misc]


@pytest.fixture
def admin() -> dict[str, str]:
    return auth(make_key(["admin"]))


@pytest.fixture
def fast(settings: Any) -> Any:
    """The test process's own settings for the sweep (the worker gets FAST)."""
    return settings.model_copy(update={k: type(getattr(settings, k))(v) for k, v in FAST.items()})


def start_worker(celery_worker: Any, **env: str) -> WorkerProcess:
    return celery_worker("webhooks", concurrency=2, env={**FAST, **env})


def register(client: Any, admin: dict[str, str], receiver: FakeWebhookReceiver,
             event_types: list[str] | None = None) -> dict[str, Any]:
    resp = client.post(
        "/api/webhook-endpoints",
        json={"url": receiver.url + "/hooks/clinicq", "event_types": event_types or ["*"]},
        headers=admin,
    )
    assert resp.status_code == 201, resp.get_json()
    doc = resp.get_json()
    receiver.secrets.append(doc["secret"])
    return doc


def new_contact(phone: str = "+5511987650001") -> uuid.UUID:
    with session_scope() as s:
        return find_or_create_contact(
            s, ContactDetails(identities=[("phone", phone)], name="Ana", source="test",
                              channel="sms")
        ).contact_id


def emit(n: int = 1, ordering_key: str | None = None) -> list[str]:
    """`n` opt-out/opt-in changes of one contact, each committed with its event."""
    contact = new_contact()
    for i in range(n):
        with session_scope() as s:
            if i % 2 == 0:
                record_opt_out(s, contact, "sms", "SAIR", "reply")
            else:
                revoke_opt_out(s, contact, "sms", "api")
    with session_scope() as s:
        return list(s.scalars(select(WebhookEvent.id).order_by(WebhookEvent.seq)))


def deliveries() -> list[WebhookDelivery]:
    with session_scope() as s:
        return list(s.scalars(select(WebhookDelivery).order_by(WebhookDelivery.id)))


def all_delivered() -> bool:
    rows = deliveries()
    return bool(rows) and all(d.status == "delivered" for d in rows)


def sweeping(fast: Any, predicate: Any) -> Any:
    """The scheduler's sweep, run here as the scheduler would, until `predicate`."""
    def step() -> Any:
        sweep(fast)
        return predicate()

    return step


# --- the transaction ------------------------------------------------------------------


def test_the_event_commits_or_rolls_back_with_the_change(client: Any, admin: Any,
                                                         receiver: FakeWebhookReceiver) -> None:
    register(client, admin, receiver)
    contact = new_contact()
    with pytest.raises(RuntimeError), session_scope() as s:
        assert record_opt_out(s, contact, "sms", "SAIR", "reply")
        raise RuntimeError("the change fails after the event was written")
    with session_scope() as s:
        assert s.scalar(select(func.count()).select_from(OptOut)) == 0
        assert s.scalar(select(func.count()).select_from(WebhookEvent)) == 0
        assert s.scalar(select(func.count()).select_from(WebhookDelivery)) == 0

    with session_scope() as s:
        record_opt_out(s, contact, "sms", "SAIR", "reply")
    with session_scope() as s:
        (event,) = s.scalars(select(WebhookEvent)).all()
        assert s.scalar(select(func.count()).select_from(OptOut)) == 1
        (delivery,) = s.scalars(select(WebhookDelivery)).all()
    assert event.type == "contact.opted_out" and delivery.event_id == event.id
    assert event.payload["data"] == {
        "contact": {"id": str(contact)}, "channel": "sms", "source": "reply",
    }
    assert event.payload["id"] == event.id and event.payload["version"] == 1
    # The keyword the patient wrote is not sent.
    assert "SAIR" not in str(event.payload)


def test_a_handler_run_twice_records_one_event() -> None:
    with session_scope() as s:
        record_event(s, "message.failed", {"x": 1}, idempotency_key="k1")
    with session_scope() as s:
        record_event(s, "message.failed", {"x": 1}, idempotency_key="k1")
        assert s.scalar(select(func.count()).select_from(WebhookEvent)) == 1


def test_only_subscribed_enabled_endpoints_get_a_delivery(client: Any, admin: Any,
                                                         receiver: FakeWebhookReceiver) -> None:
    optouts = register(client, admin, receiver, ["contact.opted_out"])
    everything = register(client, admin, receiver, ["*"])
    register(client, admin, receiver, ["appointment.confirmed"])
    off = register(client, admin, receiver, ["*"])
    assert client.patch(f"/api/webhook-endpoints/{off['id']}", json={"enabled": False},
                        headers=admin).status_code == 200
    with session_scope() as s:
        record_event(s, "contact.opted_out", {"contact": {"id": "c"}})
        # High volume: only for endpoints that name it (not "*").
        record_event(s, "message.delivered", {"message": {"id": "m"}})
    got = {(d.endpoint_id, d.event_id) for d in deliveries()}
    with session_scope() as s:
        types = dict(s.execute(select(WebhookEvent.id, WebhookEvent.type)).all())
    assert sorted((str(e), types[ev]) for e, ev in got) == sorted([
        (optouts["id"], "contact.opted_out"), (everything["id"], "contact.opted_out"),
    ])


# --- delivery ---------------------------------------------------------------------------


def test_events_reach_the_receiver_signed_and_in_order(
    client: Any, admin: Any, receiver: FakeWebhookReceiver, celery_worker: Any
) -> None:
    register(client, admin, receiver)
    start_worker(celery_worker)
    ids = emit(6)
    wait_for(all_delivered, timeout=30)
    # Verified by the receiver (standardwebhooks), each once, in the order the
    # changes happened (one contact: one ordering key).
    assert receiver.accepted_ids() == ids
    assert not receiver.rejected
    assert [d.payload["type"] for d in receiver.accepted()] == [
        "contact.opted_out", "contact.opted_in"] * 3
    with session_scope() as s:
        attempts = list(s.scalars(select(WebhookAttempt)))
    assert len(attempts) == 6 and {a.status_code for a in attempts} == {200}
    assert all(a.latency_ms >= 0 and a.response_body == '{"ok": true}' for a in attempts)


def test_500_then_200_is_redelivered_with_the_same_webhook_id(
    client: Any, admin: Any, receiver: FakeWebhookReceiver, celery_worker: Any
) -> None:
    register(client, admin, receiver)
    receiver.fail(500, times=2)
    start_worker(celery_worker)
    (event_id,) = emit(1)
    wait_for(all_delivered, timeout=30)
    assert receiver.ids_seen() == [event_id] * 3
    assert [d.status for d in receiver.deliveries] == [500, 500, 200]
    with session_scope() as s:
        codes = list(s.scalars(select(WebhookAttempt.status_code).order_by(WebhookAttempt.id)))
    assert codes == [500, 500, 200]


def test_a_batch_with_a_failing_endpoint_delivers_the_rest_in_order_per_key(
    client: Any, admin: Any, receiver: FakeWebhookReceiver, celery_worker: Any
) -> None:
    """One transaction's deliveries go to the worker as ONE task (a batch):
    an endpoint answering 500 in it costs the others nothing, and the order
    of each ordering key holds inside the batch, for both endpoints."""
    register(client, admin, receiver)
    broken = FakeWebhookReceiver()
    broken.start()
    try:
        broken.fail(500, times=1000)
        register(client, admin, broken)
        start_worker(celery_worker, WEBHOOK_RETRY_BASE_SECONDS="30",
                     WEBHOOK_RETRY_MAX_SECONDS="60")
        keys = ["appointment:a", "appointment:b", "appointment:a", "appointment:c",
                "appointment:b", "appointment:a"]
        with session_scope() as s:
            for n, key in enumerate(keys):
                record_event(s, "appointment.confirmed", {"n": n}, ordering_key=key)
        with session_scope() as s:
            events = list(s.execute(select(WebhookEvent.id, WebhookEvent.ordering_key)
                                    .order_by(WebhookEvent.seq)))
        all_ids = [e.id for e in events]
        wait_for(lambda: sorted(receiver.accepted_ids()) == sorted(all_ids), timeout=30)
        got = receiver.accepted_ids()
        for key in set(keys):
            in_order = [e.id for e in events if e.ordering_key == key]
            assert [i for i in got if i in in_order] == in_order
        # The broken endpoint got the first event of each key only: the later
        # ones wait (pending, never attempted) until the earlier is delivered.
        firsts = {next(e.id for e in events if e.ordering_key == key) for key in set(keys)}
        wait_for(lambda: set(broken.ids_seen()) == firsts, timeout=30)
        with session_scope() as s:
            stuck = list(s.execute(
                select(WebhookDelivery.event_id, WebhookDelivery.status,
                       WebhookDelivery.attempts)
                .join(WebhookEndpoint, WebhookEndpoint.id == WebhookDelivery.endpoint_id)
                .where(WebhookEndpoint.url == broken.url + "/hooks/clinicq")))
        assert {r.status for r in stuck} == {"pending"}
        assert {r.event_id for r in stuck if r.attempts} == firsts
    finally:
        broken.stop()


def test_retry_after_is_a_floor_for_the_next_attempt(
    client: Any, admin: Any, receiver: FakeWebhookReceiver, celery_worker: Any
) -> None:
    register(client, admin, receiver)
    receiver.fail(503, retry_after="30")
    start_worker(celery_worker, WEBHOOK_RETRY_MAX_SECONDS="600")
    emit(1)
    wait_for(lambda: deliveries()[0].last_status_code == 503, timeout=30)
    (delivery,) = deliveries()
    with session_scope() as s:
        (attempt,) = s.scalars(select(WebhookAttempt)).all()
    assert delivery.status == "pending"
    # The backoff alone would be about a second; the receiver asked for 30.
    assert delivery.next_attempt_at - attempt.attempted_at >= timedelta(seconds=29)


def test_receiver_down_then_back_loses_nothing(
    client: Any, admin: Any, receiver: FakeWebhookReceiver, celery_worker: Any, fast: Any
) -> None:
    register(client, admin, receiver)
    start_worker(celery_worker)
    receiver.go_down()
    ids = emit(10)
    # Attempts fail (connection refused) and are rescheduled, nothing is given up.
    wait_for(lambda: all(d.attempts >= 2 for d in deliveries()[:1]), timeout=30)
    assert not receiver.deliveries
    assert {d.status for d in deliveries()} == {"pending"}
    receiver.come_up()
    wait_for(sweeping(fast, all_delivered), timeout=60, interval=0.5)
    assert set(receiver.accepted_ids()) == set(ids)
    assert receiver.accepted_ids() == ids  # and in order (one contact)
    with session_scope() as s:
        errors = list(s.scalars(select(WebhookAttempt.error).where(WebhookAttempt.error.is_not(None))))
    assert errors and all(e.startswith("ConnectionError") for e in errors)


def test_a_worker_killed_mid_delivery_delivers_again_with_the_same_id(
    client: Any, admin: Any, receiver: FakeWebhookReceiver, celery_worker: Any, fast: Any
) -> None:
    """At-least-once: the receiver may see the event twice, always with the
    same webhook-id."""
    register(client, admin, receiver)
    receiver.hang(1.5)  # the first request is answered late…
    worker = start_worker(celery_worker)
    (event_id,) = emit(1)
    wait_for(lambda: receiver.requests, timeout=30)
    worker.kill()  # …and its worker is dead before the answer arrives
    (held,) = deliveries()
    assert held.status == "pending" and held.locked_until is not None
    start_worker(celery_worker)
    # The lease (connect 1 s + read 2 s + 5 s) runs out; the sweep hands the
    # delivery to the new worker.
    wait_for(sweeping(fast, all_delivered), timeout=60, interval=0.5)
    assert set(receiver.ids_seen()) == {event_id}
    assert len(receiver.ids_seen()) >= 2
    (done,) = deliveries()
    assert done.attempts == 2  # the killed attempt counts


def test_an_endpoint_failing_past_the_window_is_disabled_and_the_team_told(
    client: Any, admin: Any, receiver: FakeWebhookReceiver, celery_worker: Any, fast: Any
) -> None:
    endpoint = register(client, admin, receiver)
    receiver.fail(500, times=1000)
    worker = celery_worker("webhooks,email", concurrency=2,
                           env={**FAST, "WEBHOOK_ENDPOINT_DISABLE_AFTER_SECONDS": "2"})
    assert worker
    emit(1)

    def disabled() -> WebhookEndpoint | None:
        with session_scope() as s:
            row = s.get(WebhookEndpoint, uuid.UUID(endpoint["id"]))
            return row if row is not None and not row.enabled else None

    row = wait_for(sweeping(fast, disabled), timeout=60, interval=0.5)
    assert row.disabled_reason.startswith("every delivery attempt failed since")
    # The team e-mail, rendered and sent by the real email worker (outbox
    # provider in dev mode).
    (alert,) = wait_for(
        lambda: [m for m in outbound_alerts() if m.status in ("sent", "delivered")], timeout=20)
    assert alert.to_address == SUPORTE and alert.purpose == "alert"
    assert alert.channel == "email" and alert.template_data["endpoint_id"] == endpoint["id"]
    # Visible through the API too.
    shown = client.get(f"/api/webhook-endpoints/{endpoint['id']}", headers=admin).get_json()
    assert shown["enabled"] is False and shown["disabled_reason"] == row.disabled_reason
    # Nothing more is attempted while disabled.
    attempts = count_attempts()
    sweep(fast)
    time.sleep(1.5)
    assert count_attempts() == attempts
    # Re-enabled (receiver fixed): the pending event goes out.
    receiver.plan.clear()
    assert client.patch(f"/api/webhook-endpoints/{endpoint['id']}", json={"enabled": True},
                        headers=admin).status_code == 200
    wait_for(sweeping(fast, all_delivered), timeout=30, interval=0.5)


def outbound_alerts() -> list[Message]:
    with session_scope() as s:
        return list(s.scalars(select(Message).where(Message.template == "webhook_desativado")))


def count_attempts() -> int:
    with session_scope() as s:
        return int(s.scalar(select(func.count()).select_from(WebhookAttempt)) or 0)


def test_410_gone_disables_the_endpoint_at_once(
    client: Any, admin: Any, receiver: FakeWebhookReceiver, celery_worker: Any
) -> None:
    endpoint = register(client, admin, receiver)
    receiver.fail(410)
    start_worker(celery_worker)
    emit(1)
    wait_for(lambda: deliveries()[0].status == "failed", timeout=30)
    with session_scope() as s:
        row = s.get(WebhookEndpoint, uuid.UUID(endpoint["id"]))
        assert not row.enabled and "410" in row.disabled_reason
    assert len(outbound_alerts()) == 1


def test_a_delivery_past_its_retry_period_fails_and_is_listed(
    client: Any, admin: Any, receiver: FakeWebhookReceiver, celery_worker: Any, fast: Any
) -> None:
    register(client, admin, receiver)
    receiver.fail(500, times=1000)
    start_worker(celery_worker)
    (event_id,) = emit(1)
    wait_for(lambda: deliveries()[0].attempts >= 2, timeout=30)
    # A day later, as far as the delivery is concerned.
    with session_scope() as s:
        s.execute(update(WebhookDelivery).values(retry_until=datetime.now(UTC) - timedelta(seconds=1)))
    wait_for(sweeping(fast, lambda: deliveries()[0].status == "failed"), timeout=30, interval=0.5)
    listed = client.get("/api/webhook-events?status=failed", headers=admin).get_json()["events"]
    assert [e["id"] for e in listed] == [event_id]
    (delivery,) = listed[0]["deliveries"]
    assert delivery["status"] == "failed" and delivery["last_status_code"] == 500
    assert "retry period over" in delivery["last_error"]
    assert delivery["attempt_log"] and delivery["attempt_log"][0]["status_code"] == 500
    assert delivery["attempt_log"][0]["response"] == '{"ok": false}'
    assert client.get("/api/webhook-events?status=delivered", headers=admin).get_json()["events"] == []


# --- replay and rotation ------------------------------------------------------------------


def test_replay_one_event_and_a_time_range(
    client: Any, admin: Any, receiver: FakeWebhookReceiver, celery_worker: Any
) -> None:
    register(client, admin, receiver)
    start_worker(celery_worker)
    ids = emit(3)
    wait_for(all_delivered, timeout=30)

    resp = client.post(f"/api/webhook-events/{ids[1]}/replay", headers=admin)
    assert resp.status_code == 202, resp.get_json()
    wait_for(lambda: len(receiver.accepted_ids()) == 4, timeout=30)
    assert receiver.accepted_ids()[3] == ids[1]  # same webhook-id
    # The worker records the attempt after the receiver answered: settled
    # again before the range is replayed (a delivery in flight is not reopened).
    wait_for(all_delivered, timeout=30)

    with session_scope() as s:
        first, last = s.execute(select(func.min(WebhookEvent.created_at),
                                       func.max(WebhookEvent.created_at))).one()
    resp = client.post("/api/webhook-events/replay", headers=admin, json={
        "since": first.isoformat(), "until": (last + timedelta(milliseconds=1)).isoformat()})
    assert resp.status_code == 202 and resp.get_json()["deliveries"] == 3
    wait_for(lambda: len(receiver.accepted_ids()) == 7, timeout=30)
    assert sorted(receiver.accepted_ids()[4:]) == sorted(ids)

    # Errors name the field.
    resp = client.post("/api/webhook-events/replay", headers=admin,
                       json={"since": last.isoformat(), "until": first.isoformat()})
    assert resp.status_code == 400 and resp.get_json()["field"] == "since"
    resp = client.post("/api/webhook-events/replay", headers=admin, json={"since": "yesterday"})
    assert resp.status_code == 400 and resp.get_json()["field"] == "since"
    resp = client.post("/api/webhook-events/evt_nope/replay", headers=admin)
    assert resp.status_code == 404 and resp.get_json()["field"] == "event_id"


def test_replay_to_one_endpoint_that_never_had_the_event(
    client: Any, admin: Any, receiver: FakeWebhookReceiver, celery_worker: Any
) -> None:
    start_worker(celery_worker)
    (event_id,) = emit(1)  # no endpoint yet: recorded, owed to nobody
    assert deliveries() == []
    endpoint = register(client, admin, receiver)
    resp = client.post(f"/api/webhook-events/{event_id}/replay", headers=admin,
                       json={"endpoint_id": endpoint["id"]})
    assert resp.status_code == 202
    wait_for(lambda: receiver.accepted_ids() == [event_id], timeout=30)


def test_rotation_signs_with_both_secrets_during_the_overlap(
    client: Any, admin: Any, receiver: FakeWebhookReceiver, celery_worker: Any
) -> None:
    endpoint = register(client, admin, receiver)
    old = receiver.secrets.pop()
    resp = client.post(f"/api/webhook-endpoints/{endpoint['id']}/rotate", headers=admin)
    assert resp.status_code == 200
    new = resp.get_json()["secret"]
    assert new.startswith("whsec_") and new != old
    start_worker(celery_worker)
    # A receiver that knows only the new secret, and one only the old: both verify.
    receiver.secrets[:] = [new]
    emit(1)
    wait_for(all_delivered, timeout=30)
    (request,) = receiver.requests
    assert len(request.headers["webhook-signature"].split(" ")) == 2
    receiver.secrets[:] = [old]
    receiver.verify(request)
    # After the overlap, only the new secret signs.
    with session_scope() as s:
        s.execute(update(WebhookEndpoint).values(
            previous_secret_expires_at=datetime.now(UTC) - timedelta(seconds=1)))
    receiver.secrets[:] = [new]
    contact = new_contact("+5511987650002")
    with session_scope() as s:
        record_opt_out(s, contact, "all", None, "reply")
    wait_for(lambda: len(receiver.accepted()) == 2, timeout=30)
    assert len(receiver.requests[-1].headers["webhook-signature"].split(" ")) == 1


# --- the API ------------------------------------------------------------------------------


def test_endpoints_api_shows_the_secret_once_and_stores_it_encrypted(
    client: Any, admin: Any, receiver: FakeWebhookReceiver
) -> None:
    doc = register(client, admin, receiver, ["appointment.confirmed", "contact.opted_out"])
    secret = doc["secret"]
    assert secret.startswith("whsec_") and doc["event_types"] == [
        "appointment.confirmed", "contact.opted_out"]
    listed = client.get("/api/webhook-endpoints", headers=admin).get_json()
    assert [e["id"] for e in listed["endpoints"]] == [doc["id"]]
    assert "waitlist.slot_claimed" in listed["event_types"]
    one = client.get(f"/api/webhook-endpoints/{doc['id']}", headers=admin).get_json()
    assert "secret" not in one and "secret" not in listed["endpoints"][0]
    with session_scope() as s:
        row = s.get(WebhookEndpoint, uuid.UUID(doc["id"]))
        assert secret not in row.secret_encrypted
        assert secret.removeprefix("whsec_") not in row.secret_encrypted

    resp = client.patch(f"/api/webhook-endpoints/{doc['id']}", headers=admin,
                        json={"event_types": ["message.failed"]})
    assert resp.status_code == 200 and resp.get_json()["event_types"] == ["message.failed"]
    assert client.delete(f"/api/webhook-endpoints/{doc['id']}", headers=admin).status_code == 204
    assert client.get(f"/api/webhook-endpoints/{doc['id']}", headers=admin).status_code == 404


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"url": "ftp://example.com/x", "event_types": ["*"]}, "url"),
        ({"url": "https://user:pw@example.com/x", "event_types": ["*"]}, "url"),
        ({"url": "https://example.com/x", "event_types": ["appointment.exploded"]}, "event_types"),
        ({"url": "https://example.com/x", "event_types": []}, "event_types"),
        ({"url": "https://example.com/x", "event_types": ["*"], "secret": "mine"}, "secret"),
        ([], "body"),
    ],
)
def test_bad_endpoint_requests_name_the_field(client: Any, admin: Any, body: Any, field: str) -> None:
    resp = client.post("/api/webhook-endpoints", json=body, headers=admin)
    assert resp.status_code == 400 and resp.get_json()["field"] == field, resp.get_json()


def test_outside_dev_mode_only_https_public_urls(settings: Any) -> None:
    from shared.core.errors import FieldError
    from shared.core.webhook_endpoints import validate_url

    prod = settings.model_copy(update={"CLINICQ_DEV_MODE": False})
    assert validate_url("https://booking.example.com/hooks", prod)
    for url in ("http://booking.example.com/hooks", "https://127.0.0.1/x",
                "https://169.254.169.254/latest", "https://localhost/x"):
        with pytest.raises(FieldError):
            validate_url(url, prod)


def test_a_key_without_admin_scope_is_refused(client: Any) -> None:
    for scopes in (["intake", "send", "read"], ["read"]):
        key = auth(make_key(scopes))
        assert client.get("/api/webhook-endpoints", headers=key).status_code == 403
        assert client.post("/api/webhook-endpoints", headers=key, json={
            "url": "https://example.com/x", "event_types": ["*"]}).status_code == 403
        assert client.get("/api/webhook-events", headers=key).status_code == 403
        assert client.post("/api/webhook-events/replay", headers=key, json={}).status_code == 403
    with session_scope() as s:
        assert s.scalar(select(func.count()).select_from(WebhookEndpoint)) == 0


# --- the domain points ------------------------------------------------------------------------


def test_a_cancellation_clinicq_makes_is_told_one_the_booking_system_sent_is_not(
    client: Any, admin: Any, receiver: FakeWebhookReceiver, settings: Any
) -> None:
    from tests.integration.test_replies import book

    register(client, admin, receiver)
    cfg = settings.model_copy(update={"QUIET_HOURS_CHANNELS": []})
    by_booking, by_patient = book(cfg, "ext-a"), book(cfg, "ext-b", days=4)
    with session_scope() as s:
        cancel_appointment(s, get_for_update(s, by_booking), cfg)
        cancel_appointment(s, get_for_update(s, by_patient), cfg, cancelled_by="patient")
    with session_scope() as s:
        (event,) = s.scalars(select(WebhookEvent)).all()
    assert event.type == "appointment.cancelled" and event.ordering_key == f"appointment:{by_patient}"
    data = event.payload["data"]
    assert data["appointment"]["id"] == str(by_patient)
    assert data["appointment"]["external_id"] == "ext-b"
    assert data["appointment"]["status"] == "cancelled" and data["appointment"]["version"] == 2
    assert data["cancelled_by"] == "patient"


def test_patient_replies_reach_the_booking_system_end_to_end(
    admin: Any, receiver: FakeWebhookReceiver, celery_worker: Any, settings: Any, app: Any
) -> None:
    """A verified SMS "Sim" then "Remarcar", through the Twilio webhook and
    real inbound, send and webhook workers: the booking system receives
    appointment.confirmed, then conversation.needs_agent and
    appointment.reschedule_requested — ids only, no message text."""
    from tests.fakes import FakeTwilio
    from tests.integration.test_replies import book, reply
    from tests.integration.test_webhook_contract import make_provider_client

    register(app.test_client(), admin, receiver)
    cfg = settings.model_copy(update={"QUIET_HOURS_CHANNELS": []})
    with FakeTwilio() as twilio:
        celery_worker("inbound,sms,email,webhooks", concurrency=2, env={
            **FAST, **twilio.env(), "RATE_LIMIT_SMS": "1000/second"})
        aid = book(cfg, "ext-77")
        provider_client = make_provider_client(settings)
        reply(provider_client, "Sim")
        wait_for(lambda: [d.payload["type"] for d in receiver.accepted()] == ["appointment.confirmed"],
                 timeout=120)
        reply(provider_client, "Remarcar")
        try:
            wait_for(lambda: len(receiver.accepted()) >= 3, timeout=120)
        except AssertionError:
            with session_scope() as s:  # what was recorded and where it stands
                print([(e.type, e.ordering_key) for e in s.scalars(select(WebhookEvent))])
                print([(d.event_id, d.status, d.attempts, d.last_error) for d in deliveries()])
                print([(m.direction, m.text, m.status) for m in s.scalars(select(Message))])
            raise
    types = [d.payload["type"] for d in receiver.accepted()]
    assert types[0] == "appointment.confirmed"
    assert sorted(types[1:]) == ["appointment.reschedule_requested", "conversation.needs_agent"]
    by_type = {d.payload["type"]: d.payload for d in receiver.accepted()}
    confirmed = by_type["appointment.confirmed"]["data"]
    assert confirmed["appointment"]["id"] == str(aid)
    assert confirmed["appointment"]["external_id"] == "ext-77"
    assert confirmed["appointment"]["status"] == "confirmed"
    assert confirmed["channel"] == "sms" and confirmed["via"] == "reply"
    assert by_type["conversation.needs_agent"]["data"]["reason"] == "remarcar_request"
    text = str([d.payload for d in receiver.accepted()])
    assert "Sim" not in text and "Remarcar" not in text and "+55" not in text
