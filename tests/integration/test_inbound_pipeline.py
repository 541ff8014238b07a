"""End to end on real parts: signed webhook → Redis → real Celery worker →
PostgreSQL, plus idempotency, crash safety and a Redis outage."""

from __future__ import annotations

import concurrent.futures
import copy
import time
import uuid
from pathlib import Path

import psycopg
import pytest
import redis as redis_lib
import requests
from sqlalchemy import func, select, text

from shared.core.db import session_scope
from shared.core.models import (
    Contact,
    ContactIdentity,
    Conversation,
    MergeCandidate,
    Message,
    MessageEvent,
)
from shared.runtime.embedded import free_port, start_redis, stop_process
from tests.helpers import dumps, seed_payload, sign_headers, wait_for
from tests.infra import _psycopg_url
from tests.integration.processes import gunicorn_server


def count(model, *where) -> int:
    with session_scope() as s:
        return s.scalar(select(func.count()).select_from(model).where(*where)) or 0


def post_signed(client, payload, msg_id=None):
    body = dumps(payload)
    return client.post("/api/webhook", data=body, headers=sign_headers(body, msg_id=msg_id))


def test_seed_payload_is_filed_under_contact_and_conversation(client, celery_worker) -> None:
    celery_worker(queues="inbound")
    resp = post_signed(client, seed_payload())
    assert resp.status_code == 202
    message_id = uuid.UUID(resp.get_json()["message_id"])

    wait_for(lambda: count(Message, Message.id == message_id) == 1)
    with session_scope() as s:
        msg = s.get(Message, message_id)
        assert msg.direction == "inbound" and msg.status == "received"
        assert msg.text == "Gostaria de agendar uma consulta"
        assert msg.channel == "whatsapp"
        assert msg.metadata_["utm_source"] == "google"
        contact = s.get(Contact, msg.contact_id)
        assert contact.name == "João Silva"
        assert contact.cpf_hash is None  # the seed's CPF is invalid: dropped
        identities = {(i.kind, i.value) for i in s.scalars(select(ContactIdentity))}
        assert identities == {("phone", "+5511999999999"), ("email", "joao@email.com")}
        conv = s.get(Conversation, msg.conversation_id)
        assert conv.contact_id == contact.id and conv.status == "active"
        events = s.scalars(select(MessageEvent).where(MessageEvent.message_id == message_id)).all()
        assert [e.event for e in events] == ["received"]


def test_second_message_same_phone_other_email_joins_same_contact(client, celery_worker) -> None:
    celery_worker(queues="inbound")
    first = post_signed(client, seed_payload()).get_json()["message_id"]
    wait_for(lambda: count(Message) == 1)
    second_payload = seed_payload()
    second_payload["contact"] = {"phone": "11 99999-9999"}
    second_payload["message"]["text"] = "Qual o valor?"
    second = post_signed(client, second_payload).get_json()["message_id"]
    wait_for(lambda: count(Message) == 2)
    with session_scope() as s:
        a, b = s.get(Message, uuid.UUID(first)), s.get(Message, uuid.UUID(second))
        assert a.contact_id == b.contact_id
        assert a.conversation_id == b.conversation_id
    assert count(Contact) == 1


def test_ninth_digit_variant_is_the_same_contact(client, celery_worker) -> None:
    celery_worker(queues="inbound")
    p1 = seed_payload()
    p1["contact"] = {"phone": "+5554999261407", "name": "Ana"}
    p2 = seed_payload()
    p2["contact"] = {"phone": "555499261407"}  # WhatsApp wa_id without the 9
    post_signed(client, p1)
    wait_for(lambda: count(Message) == 1)
    post_signed(client, p2)
    wait_for(lambda: count(Message) == 2)
    assert count(Contact) == 1


def test_identities_of_two_contacts_attach_to_one_and_record_merge_candidate(
    client, celery_worker
) -> None:
    celery_worker(queues="inbound")
    a = seed_payload()
    a["contact"] = {"phone": "+5511911112222"}
    b = seed_payload()
    b["contact"] = {"email": "maria@example.com"}
    post_signed(client, a)
    post_signed(client, b)
    wait_for(lambda: count(Message) == 2)
    assert count(Contact) == 2
    both = seed_payload()
    both["contact"] = {"phone": "+5511911112222", "email": "maria@example.com"}
    mid = post_signed(client, both).get_json()["message_id"]
    wait_for(lambda: count(Message) == 3)
    assert count(Contact) == 2  # never silently merged
    with session_scope() as s:
        msg = s.get(Message, uuid.UUID(mid))
        phone_owner = s.scalar(
            select(ContactIdentity.contact_id).where(ContactIdentity.value == "+5511911112222")
        )
        assert msg.contact_id == phone_owner
        candidates = s.scalars(select(MergeCandidate)).all()
        assert len(candidates) == 1
        assert candidates[0].contact_id == phone_owner


def test_ten_concurrent_duplicates_make_one_message(ingest_server, celery_worker) -> None:
    celery_worker(queues="inbound")
    body = dumps(seed_payload())
    headers = sign_headers(body, msg_id="msg_dup_" + uuid.uuid4().hex)

    def send(_: int) -> requests.Response:
        return requests.post(f"{ingest_server}/api/webhook", data=body, headers=headers, timeout=10)

    with concurrent.futures.ThreadPoolExecutor(10) as pool:
        responses = list(pool.map(send, range(10)))
    assert all(r.status_code == 202 for r in responses), [r.text for r in responses]
    ids = {r.json()["message_id"] for r in responses}
    assert len(ids) == 1
    assert sum(1 for r in responses if r.json().get("duplicate")) == 9
    wait_for(lambda: count(Message) == 1)
    time.sleep(1.0)
    assert count(Message) == 1
    assert count(Contact) == 1


def test_idempotency_key_header_dedupes_legacy_senders(client) -> None:
    from tests.helpers import LEGACY_SECRET

    payload = seed_payload(webhook_secret=LEGACY_SECRET)
    headers = {"Content-Type": "application/json", "Idempotency-Key": "form-42"}
    r1 = client.post("/api/webhook", data=dumps(payload), headers=headers)
    r2 = client.post("/api/webhook", data=dumps(payload), headers=headers)
    assert r1.status_code == r2.status_code == 202
    assert r1.get_json()["message_id"] == r2.get_json()["message_id"]
    assert r2.headers["Idempotent-Replayed"] == "true"


def test_status_url_answers_accepted_then_received(client, celery_worker) -> None:
    resp = post_signed(client, seed_payload())
    status_url = resp.get_json()["status_url"]
    path = status_url.removeprefix("https://clinicq.test")
    accepted = client.get(path)
    assert accepted.status_code == 200
    assert accepted.get_json()["status"] == "accepted"

    celery_worker(queues="inbound")
    wait_for(lambda: client.get(path).get_json()["status"] == "received")
    doc = client.get(path).get_json()
    assert doc["direction"] == "inbound"
    assert "joao" not in str(doc).lower()  # no PII in the status document


def test_status_url_unknown_or_forged(client) -> None:
    from shared.core.tokens import status_token
    from tests.helpers import SECRET_KEY

    unknown = str(uuid.uuid4())
    ok_token = status_token(SECRET_KEY, unknown)
    assert client.get(f"/api/messages/{unknown}?token={ok_token}").status_code == 404
    assert client.get(f"/api/messages/{unknown}?token={'0' * 32}").status_code == 401
    assert client.get(f"/api/messages/{unknown}").status_code == 401
    assert client.get("/api/messages/not-a-uuid").status_code == 404


def test_task_run_twice_changes_nothing(celery_worker) -> None:
    from shared.inbound.filing import file_inbound_message

    payload = {
        "type": "message", "channel": "sms", "source": "webhook",
        "contact": {"phone": "+5511977776666"},
        "message": {"text": "oi", "timestamp": None, "metadata": None},
        "received_at": "2026-01-01T12:00:00+00:00", "idempotency_key": "webhook:x1",
    }
    mid = str(uuid.uuid4())
    with session_scope() as s:
        assert file_inbound_message(s, mid, copy.deepcopy(payload)) is not None
    snapshot = _snapshot()
    with session_scope() as s:
        assert file_inbound_message(s, mid, copy.deepcopy(payload)) is None
    # Same idempotency key under a new id (Redis key expired): still nothing.
    with session_scope() as s:
        assert file_inbound_message(s, str(uuid.uuid4()), copy.deepcopy(payload)) is None
    assert _snapshot() == snapshot


def _snapshot() -> list:
    with session_scope() as s:
        return [
            s.execute(text(f"SELECT * FROM {t} ORDER BY 1")).all()
            for t in ("contacts", "contact_identities", "conversations", "messages", "message_events")
        ]


def test_worker_sigkilled_mid_task_message_persisted_once_after_restart(
    client, celery_worker, infra
) -> None:
    """Hold the identity lock the worker needs, so it is provably mid-task;
    SIGKILL it; a new worker gets the redelivered task and files it once."""
    lock_key = "identity:phone:+5511999999999"
    with psycopg.connect(_psycopg_url(infra.database_url), autocommit=False) as blocker:
        blocker.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (lock_key,))
        worker = celery_worker(queues="inbound", concurrency=1)
        resp = post_signed(client, seed_payload())
        assert resp.status_code == 202

        def worker_waiting_on_lock() -> bool:
            with session_scope() as s:
                return bool(s.scalar(text(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                    "AND wait_event = 'advisory' AND datname = current_database()"
                )))

        wait_for(worker_waiting_on_lock, timeout=30)
        worker.kill()
        blocker.rollback()
    assert count(Message) == 0
    celery_worker(queues="inbound", concurrency=1)
    # Redelivery after the (test-shortened) visibility timeout.
    wait_for(lambda: count(Message) == 1, timeout=60)
    time.sleep(2)
    assert count(Message) == 1
    assert count(MessageEvent) == 1


def test_redis_stopped_gives_503_with_retry_after(settings, tmp_path: Path) -> None:
    from ingest.app import create_app

    url, proc = start_redis(tmp_path / "redis", port=free_port(), appendonly=False)
    try:
        app = create_app(settings.model_copy(update={"REDIS_URL": url}))
        c = app.test_client()
        assert post_signed(c, seed_payload()).status_code == 202
        stop_process(proc)
        resp = post_signed(c, seed_payload())
        assert resp.status_code == 503
        assert resp.headers["Retry-After"]
        assert c.get("/readyz").status_code == 503
        # Redis back on the same port (empty: the script cache too): the
        # next webhook is accepted on a fresh connection, and enqueued once.
        port = int(url.rsplit(":", 1)[1].split("/")[0])
        url, proc = start_redis(tmp_path / "redis2", port=port, appendonly=False)
        resp = post_signed(c, seed_payload())
        assert resp.status_code == 202, resp.get_json()
        assert redis_lib.Redis.from_url(url).llen("inbound") == 1
    finally:
        stop_process(proc)


def test_publish_survives_a_dropped_connection_and_enqueues_once(settings, tmp_path: Path) -> None:
    """The publisher keeps one connection per thread; when Redis drops it
    between requests (restart, idle timeout, CLIENT KILL) the next request
    reconnects instead of answering 503, and nothing is enqueued twice."""
    from ingest.app import create_app

    url, proc = start_redis(tmp_path / "redis", port=free_port(), appendonly=False)
    try:
        admin = redis_lib.Redis.from_url(url)
        app = create_app(settings.model_copy(update={"REDIS_URL": url}))
        c = app.test_client()
        assert post_signed(c, seed_payload()).status_code == 202
        assert admin.client_kill_filter(_type="normal", skipme=True) >= 1
        resp = post_signed(c, seed_payload())
        assert resp.status_code == 202, resp.get_json()
        assert admin.llen("inbound") == 2
        # A duplicate after the reconnect is still a duplicate.
        msg_id = f"msg_{uuid.uuid4().hex}"
        first = post_signed(c, seed_payload(), msg_id=msg_id).get_json()["message_id"]
        admin.client_kill_filter(_type="normal", skipme=True)
        again = post_signed(c, seed_payload(), msg_id=msg_id)
        assert again.status_code == 202
        assert again.get_json()["message_id"] == first
        assert admin.llen("inbound") == 3
    finally:
        stop_process(proc)


def test_health_endpoints(client) -> None:
    assert client.get("/healthz").status_code == 200
    ready = client.get("/readyz")
    assert ready.status_code == 200, ready.get_json()
    assert ready.get_json()["checks"] == {"redis": "ok", "postgres": "ok"}


@pytest.fixture
def ingest_server(tmp_path: Path):
    """The real gunicorn configuration serving the real app."""
    with gunicorn_server(tmp_path / "gunicorn.log") as base:
        yield base
