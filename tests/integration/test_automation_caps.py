"""Caps on automatic sends (shared/inbound/automation_caps.py) on real PostgreSQL and
Redis: a flood of public-form messages pages the on-call phone and
acknowledges addresses only up to the configured caps; what is capped is
recorded without PII and the doctor still gets the e-mail alert."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from sqlalchemy import select

from shared.core.db import session_scope
from shared.core.models import AutomationRun, MessageEvent
from shared.inbound.automations import oncall_automation, realert_unanswered_urgent
from shared.inbound.reactions import react_to_inbound
from shared.triage import triage
from tests.integration.test_automations import AUTOMATION_ENV, ONCALL, file_message, outbound

MEDICO = "medico@clinicateste.com.br"


@pytest.fixture
def configure(monkeypatch, redis_client) -> Iterator:
    """The automations' test settings plus this test's caps."""
    from shared.core.config import get_settings

    redis_client.delete("whatsapp", "email", "sms", "inbox")

    def apply(**env: str) -> None:
        for name, value in {**AUTOMATION_ENV, **env}.items():
            monkeypatch.setenv(name, value)
        get_settings.cache_clear()

    yield apply
    monkeypatch.undo()
    get_settings.cache_clear()


def web_form(text: str, n: int, email: str | None = None) -> uuid.UUID:
    """What a script posting the public form sends: a new phone each time."""
    contact = {"name": f"Robo {n}", "phone": f"+55119{88000000 + n}"}
    if email:
        contact["email"] = email
    return file_message(text, channel="web", contact=contact)


def capped_events(message_id: uuid.UUID) -> list[str]:
    with session_scope() as s:
        return list(
            s.scalars(
                select(MessageEvent.detail).where(
                    MessageEvent.message_id == message_id, MessageEvent.event == "automation_capped"
                )
            )
        )


def test_a_flood_of_urgent_form_messages_pages_oncall_only_up_to_the_global_cap(
    configure, caplog
) -> None:
    configure(ONCALL_PAGES_PER_HOUR="2")
    ids = [web_form("socorro, estou sangrando muito", n) for n in range(4)]
    with caplog.at_level(logging.WARNING, logger="shared.inbound.automations"):
        notes = [react_to_inbound(str(mid)).notes for mid in ids]

    pages = outbound(channel="sms", to_address=ONCALL)
    assert len(pages) == 2
    assert [n["oncall"] for n in notes[2:]] == ["capped: oncall global cap 2/hour"] * 2
    # Recorded on the patient's message, without PII; the doctor is e-mailed for all four.
    # The on-call automation is named by the message's grade ("sangrando
    # muito" is an emergency: urgent_oncall_emergency).
    page = oncall_automation(triage("socorro, estou sangrando muito").urgency)
    for mid in ids[2:]:
        assert capped_events(mid) == [f"{page}: oncall global cap 2/hour"]
    assert capped_events(ids[0]) == []
    assert len(outbound(channel="email", to_address=MEDICO)) == 4
    logged = [r for r in caplog.records if r.getMessage() == "automatic send capped"]
    assert len(logged) == 2
    for record in logged:
        text = f"{record.getMessage()} {record.__dict__}"
        assert "Robo" not in text and "+5511" not in text and "sangrando" not in text
    # A capped page leaves no on-call run behind, so nothing re-alerts for it.
    with session_scope() as s:
        runs = s.scalars(select(AutomationRun).where(AutomationRun.automation == page))
        assert len(list(runs)) == 2
    assert realert_unanswered_urgent(datetime.now(UTC) + timedelta(minutes=20)) == 2


def test_one_sender_pages_oncall_at_most_the_per_sender_cap(configure) -> None:
    configure(ONCALL_PAGES_PER_SENDER_PER_HOUR="1", AUTOMATION_WINDOW_HOURS="1")
    react_to_inbound(str(web_form("urgente, passando mal", 7)))
    # Past the once-per-conversation window (shortened here), same sender:
    # the conversation guard would page again, the per-sender cap does not.
    with time_machine.travel(datetime.now(UTC) + timedelta(hours=2), tick=True):
        second = web_form("urgente, ainda passando mal", 7)
        notes = react_to_inbound(str(second)).notes
    assert notes["oncall"] == "capped: oncall per sender cap 1/hour"
    assert len(outbound(channel="sms", to_address=ONCALL)) == 1
    assert capped_events(second) == ["urgent_oncall: oncall per sender cap 1/hour"]
    # Another sender is still paged.
    react_to_inbound(str(web_form("urgente, desmaiei", 8)))
    assert len(outbound(channel="sms", to_address=ONCALL)) == 2


def test_acknowledgements_are_capped_per_address_and_globally(configure) -> None:
    configure(AUTO_ACKS_PER_ADDRESS_PER_DAY="1", AUTO_ACKS_PER_HOUR="3",
              AUTOMATION_WINDOW_HOURS="1")
    victim = "vitima@exemplo.com"
    react_to_inbound(str(file_message("quero agendar", channel="email",
                                      contact={"email": victim})))
    with time_machine.travel(datetime.now(UTC) + timedelta(hours=2), tick=True):
        again = file_message("quero agendar", channel="email", contact={"email": victim})
        notes = react_to_inbound(str(again)).notes
    assert notes["auto_ack"] == "capped: ack per address cap 1/24 h"
    assert [a.to_address for a in outbound(purpose="auto_reply")] == [victim]
    assert capped_events(again) == ["auto_ack: ack per address cap 1/24 h"]

    others = [web_form("quero agendar", n, email=f"p{n}@exemplo.com") for n in range(3)]
    results = [react_to_inbound(str(mid)).notes["auto_ack"] for mid in others]
    assert results[:2] == ["queued", "queued"]
    assert results[2] == "capped: ack global cap 3/hour"
    assert len(outbound(purpose="auto_reply")) == 3
    # Team alerts are not acknowledgements: the support team heard of every message.
    assert len(outbound(purpose="alert")) >= 4


def test_when_redis_does_not_answer_pages_go_out_and_acknowledgements_do_not(settings) -> None:
    from shared.inbound.automation_caps import auto_ack_cap, oncall_page_cap
    from shared.runtime.embedded import free_port

    dead = settings.model_copy(update={"REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"})
    assert oncall_page_cap(dead, uuid.uuid4()) is None  # an urgent patient outweighs a flood
    assert auto_ack_cap(dead, "paciente@exemplo.com") is not None
