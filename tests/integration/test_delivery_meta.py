"""WhatsApp through the Meta Cloud API: a real worker process running the real
`requests` client against the fake Graph API (own module: a worker listening
on `whatsapp` with Twilio settings must not be alive at the same time). How
delivery meets Meta's failures (429, 5xx, timeouts, permanent codes) is in
test_provider_failures.py, with every other provider's."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fakes import FakeMeta
from tests.integration.processes import WorkerProcess
from tests.integration.test_delivery import PATIENT, new_contact, send, settled, worker_env


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
            "confirm_payload": "CONFIRM_appt-1", "appointment_id": "appt-1"}
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
    # The approved reminder carries three quick replies (PROVIDERS.md), in
    # the order of whatsapp/lembrete_consulta.buttons.
    assert b.json["template"]["components"][1:] == [
        {"type": "button", "sub_type": "quick_reply", "index": str(i),
         "parameters": [{"type": "payload", "payload": f"{prefix}appt-1"}]}
        for i, prefix in enumerate(("CONFIRM_", "RESCHEDULE_", "CANCEL_"))]


def test_meta_reminder_inside_the_window_keeps_its_buttons(
    meta: FakeMeta, meta_worker: WorkerProcess
) -> None:
    """Inside the 24-hour window the reminder is free-form text, with the same
    three quick replies as an interactive message (taps come back as
    `button_reply` with our id)."""
    data = {"paciente_nome": "Ana", "data": "10/12", "horario": "14:00", "endereco": "Rua A, 1",
            "appointment_id": "appt-2"}
    mid = send("whatsapp", text=None, contact_id=new_contact(inbound_minutes_ago=5),
               template="lembrete_consulta", template_data=data)
    settled(mid, "sent")
    [req] = meta.sends_for(str(mid))
    assert req.json["type"] == "interactive"
    interactive = req.json["interactive"]
    assert interactive["type"] == "button"
    assert interactive["body"]["text"].startswith("Olá Ana! Lembrete")
    assert interactive["action"]["buttons"] == [
        {"type": "reply", "reply": {"id": f"{prefix}appt-2", "title": label}}
        for label, prefix in (("Confirmar", "CONFIRM_"), ("Remarcar", "RESCHEDULE_"),
                              ("Cancelar", "CANCEL_"))]
