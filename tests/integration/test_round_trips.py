"""PostgreSQL round trips on the two hot paths, counted on the real engine:
an API send to a known patient and the worker's send of that message. Each
round trip is CPU on both sides and latency in between; these numbers are
what bench/delivery.py's throughput rests on, so a change that adds one
should be a decision, not an accident.

Counted: statements (cursor executions) plus, for every transaction that
is not autocommit, its BEGIN and COMMIT.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import event, select

from shared.core.db import get_engine, session_scope
from shared.core.models import ApiKey, Message, MessageEvent
from tests.fakes import FakeTwilio


@dataclass
class RoundTrips:
    statements: int = 0
    transactions: int = 0  # BEGIN ... COMMIT blocks (two round trips each)

    @property
    def total(self) -> int:
        return self.statements + 2 * self.transactions


@pytest.fixture
def round_trips() -> Iterator[RoundTrips]:
    counted = RoundTrips()
    engine = get_engine()

    def on_execute(*_: Any) -> None:
        counted.statements += 1

    def on_begin(conn: Any) -> None:
        if not conn.connection.dbapi_connection.autocommit:
            counted.transactions += 1

    event.listen(engine, "before_cursor_execute", on_execute)
    event.listen(engine, "begin", on_begin)
    try:
        yield counted
    finally:
        event.remove(engine, "before_cursor_execute", on_execute)
        event.remove(engine, "begin", on_begin)


@pytest.fixture
def twilio_here(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeTwilio]:
    """This process configured like an SMS worker against the fake Twilio."""
    import shared.providers as providers
    from shared.core.config import get_settings

    with FakeTwilio() as fake:
        for key, value in {**fake.env(), "RATE_LIMIT_SMS": "1000/second"}.items():
            monkeypatch.setenv(key, value)
        get_settings.cache_clear()
        providers._INSTANCES.clear()
        try:
            yield fake
        finally:
            monkeypatch.undo()
            get_settings.cache_clear()
            providers._INSTANCES.clear()


@pytest.fixture
def api_key() -> str:
    from ingest.api.auth import generate_api_key, hash_api_key

    key = generate_api_key()
    with session_scope() as s:
        s.add(ApiKey(name="round-trips", key_hash=hash_api_key(key), scopes=["send"]))
    return key


def _post(client: Any, key: str, text: str) -> str:
    resp = client.post("/api/messages", json={"to": "+5511987654321", "channel": "sms", "text": text},
                       headers={"Authorization": f"Bearer {key}"})
    assert resp.status_code == 202, resp.json
    return str(resp.json["message_id"])


def test_api_send_to_a_known_patient_is_two_round_trips(
    client: Any, api_key: str, round_trips: RoundTrips
) -> None:
    _post(client, api_key, "first: creates the contact, caches the key")
    before = RoundTrips(round_trips.statements, round_trips.transactions)
    mid = _post(client, api_key, "Lembrete: consulta amanhã")
    # One SELECT (contact, active conversation, opt-out) and one INSERT that
    # carries the `created` event; no transaction around them.
    assert round_trips.statements - before.statements == 2
    assert round_trips.transactions - before.transactions == 0
    with session_scope() as s:
        assert s.scalar(select(Message.status).where(Message.id == uuid.UUID(mid))) == "queued"
        assert list(s.scalars(select(MessageEvent.event).where(
            MessageEvent.message_id == uuid.UUID(mid)))) == ["created"]


def test_worker_send_is_three_round_trips(
    client: Any, api_key: str, twilio_here: FakeTwilio, round_trips: RoundTrips
) -> None:
    from shared.outbound.delivery import deliver

    mid = _post(client, api_key, "Lembrete: consulta amanhã")
    before = RoundTrips(round_trips.statements, round_trips.transactions)
    assert deliver(mid, "sms").status == "sent"
    # Read (row + opt-out), claim (+ event), sent (+ event); each commits alone.
    assert round_trips.statements - before.statements == 3
    assert round_trips.transactions - before.transactions == 0
    assert len(twilio_here.sends_for(mid)) == 1
    with session_scope() as s:
        assert list(s.scalars(select(MessageEvent.event).where(
            MessageEvent.message_id == uuid.UUID(mid)).order_by(MessageEvent.id))) == [
            "created", "claimed", "sent"]
