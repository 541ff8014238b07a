"""Patient data stays out of logs and Flower during a database outage.

A real worker (LOG_LEVEL=DEBUG) is pointed at a PostgreSQL that refuses
connections, so the inbound task fails and Celery retries it: each retry is
a new task message, published by Celery itself (not by ingest's hand-built
envelope). What the worker logs and what it broadcasts on the Celery event
stream — the stream Flower builds its task list from (`task-received` and
`task-retried` events carry `args`/`kwargs`) — must hold none of the
patient's name, phone, email or message text.
"""

from __future__ import annotations

import threading
from typing import Any

import orjson
from celery import Celery

from tests.helpers import dumps, seed_payload, sign_headers, wait_for

NAME = "Quitéria Zanforlin"
PHONE = "+5511987651234"
EMAIL = "quiteria.zanforlin@example.org"
PHRASE = "minha tireoide zumbiu de madrugada"


def _needles() -> list[str]:
    return [NAME, "Zanforlin", PHONE, PHONE[1:], "987651234", EMAIL, "zanforlin@", PHRASE, "zumbiu"]


class EventTap:
    """Every Celery event on the test broker, as Flower receives them."""

    def __init__(self, broker_url: str) -> None:
        self.events: list[dict[str, Any]] = []
        self._app = Celery(broker=broker_url)
        self._ready = threading.Event()
        self._receiver: Any = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with self._app.connection() as conn:
            self._receiver = self._app.events.Receiver(
                conn, handlers={"*": self.events.append}
            )
            self._ready.set()
            self._receiver.capture(limit=None, timeout=None, wakeup=False)

    def __enter__(self) -> EventTap:
        self._thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self._receiver.should_stop = True
        self._thread.join(10)

    def of(self, kind: str, task_id: str) -> list[dict[str, Any]]:
        return [e for e in list(self.events) if e.get("type") == kind and e.get("uuid") == task_id]


def test_retries_during_db_outage_leak_no_patient_data(client, celery_worker, infra) -> None:
    payload = seed_payload(
        contact={"name": NAME, "phone": PHONE, "email": EMAIL},
        message={"text": f"Bom dia, {PHRASE}, pode me ligar?", "timestamp": "2025-11-20T03:00:00Z"},
    )
    body = dumps(payload)
    with EventTap(infra.redis_url) as tap:
        worker = celery_worker(
            queues="inbound",
            concurrency=1,
            env={
                # Connection refused at once: every run of the task fails
                # with OperationalError and is retried by Celery.
                "DATABASE_URL": "postgresql://clinicq@127.0.0.1:9/clinicq",
                "LOG_LEVEL": "DEBUG",
            },
        )
        resp = client.post("/api/webhook", data=body, headers=sign_headers(body))
        assert resp.status_code == 202
        task_id = resp.get_json()["message_id"]
        # The first delivery, a retry published by Celery, and that retry's
        # own delivery (received again by the worker).
        wait_for(lambda: len(tap.of("task-retried", task_id)) >= 2, timeout=60, interval=0.2)
        wait_for(lambda: len(tap.of("task-received", task_id)) >= 3, timeout=60, interval=0.2)

    received = tap.of("task-received", task_id)
    # The id stays visible: ops find the task by the message id the sender holds.
    assert all(task_id in e["args"] for e in received)
    stream = orjson.dumps(
        [e for e in tap.events if e.get("uuid") == task_id], default=str
    ).decode()
    log = worker.log_text()
    assert "OperationalError" in log  # the outage really happened, and was logged
    for needle in _needles():
        assert needle.lower() not in stream.lower(), f"{needle!r} in the Celery event stream"
        assert needle.lower() not in log.lower(), f"{needle!r} in the worker's DEBUG log"


def test_database_errors_do_not_quote_patient_values() -> None:
    """Bound parameters and PostgreSQL's DETAIL/CONTEXT lines would put the
    values into the exception text that logs, retries and Flower show."""
    from sqlalchemy import text
    from sqlalchemy.exc import DBAPIError

    from shared.core.db import session_scope

    cases = [
        # client-side refusal: SQLAlchemy appends "[parameters: …]"
        ("SELECT CAST(:v AS text)", {"v": f"{PHRASE}\x00"}),
        # check violation: "DETAIL: Failing row contains (…)", the whole row
        ("CREATE TEMP TABLE leak_check (x text CHECK (length(x) < 5));"
         " INSERT INTO leak_check VALUES (:v)", {"v": PHRASE}),
        # unique violation: "DETAIL: Key (x)=(…) already exists."
        ("CREATE TEMP TABLE leak_probe (x text UNIQUE);"
         " INSERT INTO leak_probe VALUES (:v), (:v)", {"v": NAME}),
    ]
    for sql, params in cases:
        try:
            with session_scope() as session:
                for statement in sql.split("; "):
                    session.execute(text(statement), params if ":v" in statement else {})
        except DBAPIError as exc:
            message = f"{exc}\n{exc!r}"
        else:  # pragma: no cover - each case is an error
            raise AssertionError(f"no error for {sql}")
        for needle in _needles():
            assert needle.lower() not in message.lower(), f"{needle!r} in: {message}"


def test_redacted_reprs_keep_ids_and_types_only() -> None:
    from shared.core.task_repr import redacted_argsrepr, redacted_kwargsrepr
    from shared.core.taskqueue import build_envelope

    mid = "0b6f3c1e-5d2a-4b8e-9f10-2c3d4e5f6a7b"
    assert redacted_argsrepr([mid, {"contact": {"name": NAME}}, PHONE, 3, None]) == (
        f"['{mid}', {{…}}, '…', 3, None]"
    )
    assert redacted_kwargsrepr({"attempt": 2, "to": EMAIL, "data": [PHRASE]}) == (
        "{'attempt': 2, 'to': '…', 'data': […]}"
    )
    # Ingest's hand-built envelope, when the caller names no argsrepr.
    headers = orjson.loads(build_envelope("t", [mid, {"text": PHRASE}], "inbound"))["headers"]
    assert headers["argsrepr"] == f"['{mid}', {{…}}]" and headers["kwargsrepr"] == "{}"
