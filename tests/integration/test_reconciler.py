"""The reconciler matches exactly, isolates each row, ages rows on the
database clock and never judges a send that may still be running — against
the fake Twilio's list API, with a real worker sending through the SDK."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import time_machine
from sqlalchemy import text

from shared.core.config import ConfigError, load_settings
from shared.core.db import session_scope
from shared.outbound.create import OutboundRequest, create_outbound_message
from tests.fakes import FakeTwilio
from tests.integration.processes import WorkerProcess
from tests.integration.test_delivery import (  # noqa: F401 - fixtures
    PATIENT,
    message,
    new_contact,
    reconcile,
    reset_fakes,
    send,
    settled,
    twilio,
    twilio_worker,
)

REMINDER_DATA = {"data": "10/12", "horario": "14:00", "endereco": "Rua A, 1"}
# A production-like time limit for the rows this module makes by hand.
PRODUCTION_LIMITS = {"SEND_TASK_TIME_LIMIT_SECONDS": "300", "RECONCILE_STUCK_AFTER_SECONDS": "360"}


def test_templated_reminder_never_takes_another_messages_sid_and_one_row_never_stops_the_pass(
    twilio: FakeTwilio, twilio_worker: WorkerProcess, reconcile: Any  # noqa: F811
) -> None:
    # An ordinary SMS to the patient, accepted and recorded with its SID.
    other = send(text="Sua consulta foi confirmada.")
    other_sid = settled(other, "sent").provider_message_id
    # A templated reminder (no stored text) that Twilio never accepted ...
    twilio.hang(3.0, accept=False)
    reminder = send(text=None, template="lembrete", template_data=REMINDER_DATA)
    settled(reminder, "unknown")
    # ... and a message Twilio did accept, whose answer was lost.
    twilio.hang(3.0, accept=True)
    accepted = send(text="Traga seus exames.")
    settled(accepted, "unknown")
    time.sleep(4.1)

    report = reconcile(twilio.env(), stuck_after_seconds=0)

    assert report.requeued == [str(reminder)]
    assert report.found_at_provider == [str(accepted)]
    assert report.errors == []
    assert message(other).provider_message_id == other_sid
    assert message(accepted).provider_message_id == twilio.accepted_for(str(accepted))[0]["sid"]
    row = settled(reminder, "sent")
    assert row.provider_message_id != other_sid
    assert len(twilio.accepted_for(str(reminder))) == 1


def test_a_message_over_1600_characters_is_found_not_resent(
    twilio: FakeTwilio, twilio_worker: WorkerProcess, reconcile: Any  # noqa: F811
) -> None:
    long_text = "Orientações pré-operatórias: " + "jejum de 8 horas. " * 110
    assert len(long_text) > 1600
    twilio.hang(3.0, accept=True)
    mid = send(text=long_text)
    settled(mid, "unknown")
    time.sleep(4.1)
    report = reconcile(twilio.env(), stuck_after_seconds=0)
    assert report.found_at_provider == [str(mid)]
    assert message(mid).status == "sent"
    time.sleep(1.0)
    assert len(twilio.sends_for(str(mid))) == 1


def test_a_whatsapp_content_template_is_never_guessed_but_goes_to_an_operator(
    twilio: FakeTwilio, twilio_worker: WorkerProcess, reconcile: Any  # noqa: F811
) -> None:
    # Outside the 24-hour window the message goes as a Content template:
    # Twilio renders its text, so there is no body of ours to match exactly.
    data = {"paciente_nome": "Ana", "data": "10/12", "horario": "14:00", "endereco": "Rua A, 1",
            "confirm_payload": "CONFIRM_appt-1", "appointment_id": "appt-1"}
    twilio.hang(3.0, accept=True)
    mid = send("whatsapp", text=None, contact_id=new_contact(inbound_minutes_ago=None),
               template="lembrete_consulta", template_data=data)
    settled(mid, "unknown")
    time.sleep(4.1)
    report = reconcile(twilio.env(), stuck_after_seconds=0)
    assert report.for_operator == [str(mid)] and report.found_at_provider == []
    row = message(mid)
    assert row.status == "unknown" and row.metadata_["needs_operator"] is True
    assert len(twilio.sends_for(str(mid))) == 1


def _sending_row(claimed_seconds_ago: float) -> uuid.UUID:
    """A message left `sending` by a worker (claim stamped by the database)."""
    with session_scope() as s:
        mid = create_outbound_message(s, OutboundRequest(
            channel="sms", to_address=PATIENT, contact_id=new_contact(), text="Oi")).message_id
    with session_scope() as s:
        s.execute(
            text("UPDATE messages SET status = 'sending', provider = 'twilio_sms', attempts = 1,"
                 " updated_at = now() - make_interval(secs => :ago) WHERE id = :id"),
            {"ago": claimed_seconds_ago, "id": mid},
        )
    return mid


def test_a_send_is_never_judged_abandoned_before_the_task_time_limit(
    twilio: FakeTwilio, reconcile: Any  # noqa: F811
) -> None:
    # Claimed 30 s ago: past the provider timeouts, but the task may run for
    # up to its 300 s time limit. Twilio has no trace of it yet.
    running = _sending_row(30)
    report = reconcile({**twilio.env(), **PRODUCTION_LIMITS}, stuck_after_seconds=0)
    assert report.total == 0 and message(running).status == "sending"
    # Past the time limit the worker is gone: now it is settled.
    abandoned = _sending_row(310)
    report = reconcile({**twilio.env(), **PRODUCTION_LIMITS}, stuck_after_seconds=0)
    assert report.requeued == [str(abandoned)]
    assert message(running).status == "sending"


def test_ages_are_measured_on_the_database_clock(
    twilio: FakeTwilio, reconcile: Any  # noqa: F811
) -> None:
    running = _sending_row(1)
    # A reconciler host whose clock runs an hour ahead.
    with time_machine.travel(datetime.now(UTC) + timedelta(hours=1), tick=True):
        report = reconcile({**twilio.env(), **PRODUCTION_LIMITS}, stuck_after_seconds=0)
    assert report.total == 0 and message(running).status == "sending"


def test_stuck_threshold_must_exceed_the_send_time_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEND_TASK_TIME_LIMIT_SECONDS", "300")
    monkeypatch.setenv("RECONCILE_STUCK_AFTER_SECONDS", "120")
    with pytest.raises(ConfigError) as raised:
        load_settings()
    assert "RECONCILE_STUCK_AFTER_SECONDS must exceed SEND_TASK_TIME_LIMIT_SECONDS" in str(
        raised.value
    )
    monkeypatch.setenv("RECONCILE_STUCK_AFTER_SECONDS", "301")
    assert load_settings().RECONCILE_STUCK_AFTER_SECONDS == 301
