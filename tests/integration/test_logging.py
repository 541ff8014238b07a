"""PII and secrets stay out of logs (ARCHITECTURE rule 9): a real Celery
worker's log file after filing a message full of identifiers, and unit checks
of shared.core.logs.JsonFormatter."""

from __future__ import annotations

import logging
import sys
import uuid

import orjson
import pytest
from sqlalchemy import func, select

from shared.core.db import session_scope
from shared.core.logs import JsonFormatter
from shared.core.models import Contact, Message
from tests.helpers import (
    LEGACY_SECRET,
    OLD_SIGNING_SECRET,
    SECRET_KEY,
    SIGNING_SECRET,
    dumps,
    seed_payload,
    sign_headers,
    wait_for,
)

CPF = "529.982.247-25"  # valid check digits: it is kept (hashed) and must never be logged
PHONE = "+5511988887777"
EMAIL = "maria.souza@example.com"

CLEAR_FORMS = [
    CPF, "52998224725", PHONE, "5511988887777", "11988887777", "988887777", "98888-7777",
    EMAIL, "maria.souza",
]
SECRETS = [SIGNING_SECRET, SIGNING_SECRET.removeprefix("whsec_"), OLD_SIGNING_SECRET,
           LEGACY_SECRET, SECRET_KEY]


def test_worker_log_file_has_no_pii_and_no_secrets(client, celery_worker) -> None:
    worker = celery_worker(queues="inbound", env={"LOG_LEVEL": "DEBUG"})
    payload = seed_payload()
    payload["contact"] = {"name": "Maria Souza", "phone": "(11) 98888-7777", "email": EMAIL, "cpf": CPF}
    payload["message"]["text"] = f"Meu CPF é {CPF}, telefone {PHONE}, email {EMAIL}"
    body = dumps(payload)
    resp = client.post("/api/webhook", data=body, headers=sign_headers(body))
    assert resp.status_code == 202, resp.get_json()
    message_id = resp.get_json()["message_id"]
    # The legacy path too: its body secret must not travel to the worker.
    legacy = seed_payload(webhook_secret=LEGACY_SECRET)
    legacy["contact"] = {"phone": PHONE, "cpf": CPF}
    resp2 = client.post("/api/webhook", data=dumps(legacy), headers={"Content-Type": "application/json"})
    assert resp2.status_code == 202

    def filed() -> bool:
        with session_scope() as s:
            return (s.scalar(select(func.count()).select_from(Message)) or 0) == 2

    wait_for(filed, timeout=30)
    with session_scope() as s:
        contact = s.get(Contact, s.get(Message, uuid.UUID(message_id)).contact_id)
        assert contact.cpf_hash  # the CPF was really processed, not dropped
    wait_for(lambda: worker.log_text().count("inbound message filed") == 2, timeout=15)
    worker.stop()

    log = worker.log_text()
    assert message_id in log  # the log is about this message
    for clear in CLEAR_FORMS:
        assert clear not in log, f"{clear!r} appears in the worker log"
    for secret in SECRETS:
        assert secret not in log, "a secret appears in the worker log"
    # Structured: every line the app logs is one JSON document.
    app_lines = [line for line in log.splitlines() if line.startswith("{")]
    assert app_lines
    for line in app_lines:
        orjson.loads(line)


def _record(msg: str, *args: object, exc_info: object = None, **extra: object) -> logging.LogRecord:
    record = logging.getLogger("clinicq.test").makeRecord(
        "clinicq.test", logging.WARNING, __file__, 1, msg, args, exc_info, extra=extra
    )
    return record


def test_formatter_emits_one_json_document_with_the_basics() -> None:
    doc = orjson.loads(JsonFormatter().format(_record("hello %s", "world", message_id="m-1")))
    assert doc["msg"] == "hello world"
    assert doc["level"] == "WARNING"
    assert doc["logger"] == "clinicq.test"
    assert doc["message_id"] == "m-1"
    assert doc["ts"].endswith("+00:00")


def test_formatter_masks_pii_in_message_args_and_nested_extras() -> None:
    line = JsonFormatter().format(
        _record(
            "contact %s wrote from %s",
            EMAIL,
            PHONE,
            contact={"cpf": CPF, "phones": [PHONE, "(11) 98888-7777"], "n": 3},
            note=f"cpf {CPF}",
        )
    )
    for clear in CLEAR_FORMS:
        assert clear not in line, clear
    doc = orjson.loads(line)
    assert doc["msg"] == "contact m***@example.com wrote from ***7777"
    assert doc["contact"]["cpf"] == "***.982.247-**"
    assert doc["contact"]["n"] == 3


def test_formatter_drops_secret_named_extras_at_any_depth() -> None:
    line = JsonFormatter().format(
        _record(
            "calling provider",
            api_key="sk-live-123",
            auth_token="tok-456",
            request={"headers": {"Authorization": "Bearer abc789"}, "webhook_secret": "zzz"},
        )
    )
    for secret in ("sk-live-123", "tok-456", "abc789", "zzz"):
        assert secret not in line
    doc = orjson.loads(line)
    assert "api_key" not in doc and "auth_token" not in doc
    assert doc["request"]["headers"]["Authorization"] == "[redacted]"


def test_formatter_masks_pii_in_tracebacks() -> None:
    try:
        raise ValueError(f"bad contact {EMAIL} / {CPF}")
    except ValueError:
        line = JsonFormatter().format(_record("failed", exc_info=sys.exc_info()))
    doc = orjson.loads(line)
    assert "ValueError" in doc["exc"]
    assert EMAIL not in line and CPF not in line


def test_formatter_handles_unserialisable_extras() -> None:
    class Thing:
        def __str__(self) -> str:
            return f"thing of {EMAIL}"

    doc = orjson.loads(JsonFormatter().format(_record("x", thing=Thing())))
    assert doc["thing"] == "thing of m***@example.com"


def test_formatter_keeps_uuids_whole_but_masks_pii_beside_them() -> None:
    # Two all-digit UUID groups ("-6341-4082-") once read as a phone number,
    # which mangled message and task ids in every log line.
    mid = "a9a72bd7-6341-4082-b3ea-032b949e953d"
    doc = orjson.loads(JsonFormatter().format(
        _record("task %s for %s", mid, PHONE, message_id=mid)
    ))
    assert doc["msg"] == f"task {mid} for ***7777"
    assert doc["message_id"] == mid


def test_formatter_keeps_timestamps_and_ip_addresses_readable() -> None:
    # Seen in `make run`'s log: APScheduler's "next run at: 2026-11-23
    # 08:26:32" and Celery's broker "127.0.0.1:43943" came out as "***2308:26:32"
    # and "***7001:43943" (their digit runs read as phone numbers).
    msg = ('Running job "tick (next run at: 2026-11-23 08:26:32 UTC)" '
           "(scheduled at 2026-11-23 08:26:17.445500+00:00); broker redis://127.0.0.1:43943/0; "
           "took 08:26:03.765500, at 2026-11-23T08:26:03.669+00:00 from 10.0.0.255")
    doc = orjson.loads(JsonFormatter().format(_record("%s", msg)))
    assert doc["msg"] == msg


@pytest.mark.parametrize("text,clear", [
    (f"wrote from {PHONE} at 2026-11-23 08:26:32", PHONE),
    ("phone 2026-1198-8877", "1198-8877"),       # a date-like phone, not a date
    ("phone 11.98888.7777", "98888"),            # dotted, not an IPv4 address
    ("phone 192.168.1.1.5", "192.168.1.1.5"),    # five groups: not an address
    ("cpf 123.456.789-09 at 2026-11-23", "123.456.789-09"),
    ("bad date 2026-13-45 1234", "2026-13-45 1234"),
])
def test_what_is_kept_whole_does_not_shelter_pii(text: str, clear: str) -> None:
    line = JsonFormatter().format(_record("%s", text))
    assert clear not in line
