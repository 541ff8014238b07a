"""WhatsApp through the Meta Cloud API: a real worker process running the real
`requests` client against the fake Graph API (own module: a worker listening
on `whatsapp` with Twilio settings must not be alive at the same time)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fakes import FakeMeta
from tests.integration.processes import WorkerProcess
from tests.integration.test_delivery import (  # noqa: F401 - reconcile is a fixture
    PATIENT,
    message,
    new_contact,
    reconcile,
    send,
    settled,
    worker_env,
)


@pytest.fixture(scope="module")
def meta() -> Iterator[FakeMeta]:
    with FakeMeta() as fake:
        yield fake


@pytest.fixture(autouse=True)
def reset_fake(meta: FakeMeta) -> None:
    with meta.lock:
        meta.requests.clear()
        meta.plan.clear()


@pytest.fixture(scope="module")
def meta_worker(tmp_path_factory: Any, meta: FakeMeta) -> Iterator[WorkerProcess]:
    log = Path(tmp_path_factory.mktemp("w")) / "meta-worker.log"
    worker = WorkerProcess("whatsapp", 1, log, worker_env(meta.env()))
    worker.wait_ready()
    yield worker
    worker.stop()


def test_meta_text_and_template_payloads(meta: FakeMeta, meta_worker: WorkerProcess) -> None:
    data = {"paciente_nome": "Ana", "data": "10/12", "horario": "14:00", "endereco": "Rua A, 1",
            "confirm_payload": "CONFIRM_appt-1"}
    inside = send("whatsapp", text="Oi Ana", contact_id=new_contact(inbound_minutes_ago=1))
    outside = send("whatsapp", text=None, contact_id=new_contact(inbound_minutes_ago=None),
                   template="lembrete_consulta", template_data=data)
    row = settled(inside, "sent")
    settled(outside, "sent")
    [a] = meta.sends_for(str(inside))
    [b] = meta.sends_for(str(outside))
    assert a.path == "/v21.0/106540352242922/messages"
    assert a.json["type"] == "text" and a.json["text"] == {"body": "Oi Ana", "preview_url": False}
    assert a.json["to"] == PATIENT.lstrip("+") and row.provider_message_id.startswith("wamid.")
    assert b.json["type"] == "template"
    assert b.json["template"]["name"] == "lembrete_consulta"
    assert b.json["template"]["language"] == {"code": "pt_BR"}
    assert [p["text"] for p in b.json["template"]["components"][0]["parameters"]] == [
        "Ana", "10/12", "14:00", "Rua A, 1"]
    # The approved reminder carries the confirm quick-reply (PROVIDERS.md).
    assert b.json["template"]["components"][1] == {
        "type": "button", "sub_type": "quick_reply", "index": "0",
        "parameters": [{"type": "payload", "payload": "CONFIRM_appt-1"}]}


@pytest.mark.parametrize("code", ["131047", "131026", "132001"])
def test_meta_permanent_codes(code: str, meta: FakeMeta, meta_worker: WorkerProcess) -> None:
    meta.fail(400, code)
    mid = send("whatsapp", text="Oi", contact_id=new_contact(inbound_minutes_ago=1))
    row = settled(mid, "failed")
    assert row.error_code == code and len(meta.sends_for(str(mid))) == 1


def test_meta_throughput_error_retried(meta: FakeMeta, meta_worker: WorkerProcess) -> None:
    meta.fail(429, "130429", retry_after="1")
    mid = send("whatsapp", text="Oi", contact_id=new_contact(inbound_minutes_ago=1))
    settled(mid, "sent")
    first, second = meta.sends_for(str(mid))
    assert second.at - first.at >= 1.0


def test_meta_timeout_goes_to_operator_not_resent(
    meta: FakeMeta, meta_worker: WorkerProcess, reconcile: Any  # noqa: F811
) -> None:
    meta.hang(3.0)
    mid = send("whatsapp", text="Oi", contact_id=new_contact(inbound_minutes_ago=1))
    settled(mid, "unknown")
    time.sleep(4.1)  # past connect + read timeouts + 2 s: surely not in flight
    report = reconcile(meta.env(), stuck_after_seconds=0)
    assert report.for_operator == [str(mid)]
    row = message(mid)
    assert row.status == "unknown" and row.metadata_["needs_operator"] is True
    assert reconcile(meta.env(), stuck_after_seconds=0).total == 0  # once
    time.sleep(0.5)
    assert len(meta.sends_for(str(mid))) == 1
