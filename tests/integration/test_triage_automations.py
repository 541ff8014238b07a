"""The urgent path acting on graded triage, on real PostgreSQL and Redis:
safety replies (SAMU for an emergency, CVV for self-harm) instead of the
acknowledgement at any hour, the grade and discriminator in the on-call SMS,
the team e-mail and the inbox labels; and end to end through real Celery
workers and the fake Twilio at 02:00 clinic time."""

# ruff: noqa: F811 - `configure` is test_automations' fixture, imported by name
from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
import time_machine
from sqlalchemy import select

from shared.contacts.optouts import record_opt_out
from shared.core.config import get_settings
from shared.core.db import session_scope
from shared.core.models import Message
from shared.inbound.reactions import react_to_inbound
from shared.inbox.sync import conversation_labels
from tests.fakes import FakeTwilio
from tests.helpers import dumps, seed_payload, sign_headers, wait_for
from tests.integration.test_automations import (  # noqa: F401 - `configure` is a fixture
    AUTOMATION_ENV,
    ONCALL,
    PATIENT_PHONE,
    configure,
    file_message,
    outbound,
)

STROKE = "minha mae acordou com a boca torta e nao consegue levantar o braco direito"
SUICIDAL = "nao aguento mais essa dor por dentro, penso em me matar todo dia"
MILD_RESOLVED = "tive uma febre baixa ontem mas ja passou, ta tudo bem. obrigada!"
NIGHT = datetime(2030, 3, 13, 2, 0, tzinfo=ZoneInfo("America/Sao_Paulo"))
QUIET = {"QUIET_HOURS_CHANNELS": "email,sms,whatsapp", "QUIET_HOURS_START": "20:00",
         "QUIET_HOURS_END": "08:00", "HOLIDAYS": ""}


def triage_of(message_id) -> dict:
    with session_scope() as s:
        return s.get(Message, message_id).triage


def test_emergency_at_night_gets_the_samu_reply_not_the_ack_and_alerts_oncall(configure) -> None:
    configure(**QUIET)
    with time_machine.travel(NIGHT, tick=True):
        mid = file_message(STROKE)
        ctx = react_to_inbound(str(mid))
    triage = triage_of(mid)
    assert triage["urgency"] == "emergency" and triage["urgent"] is True
    assert triage["discriminator"] == "acute_neuro_deficit"
    (reply,) = outbound(purpose="auto_reply")
    assert reply.template == "resposta_emergencia" and reply.channel == "whatsapp"
    assert reply.to_address == PATIENT_PHONE and reply.status == "queued"
    assert "SAMU 192" in reply.text and "pronto-socorro" in reply.text
    assert "menu" not in reply.text.lower() and "AGENDAR" not in reply.text
    assert ctx.notes["auto_ack"] == "replaced by the safety reply"
    (sms,) = outbound(to_address=ONCALL)
    assert sms.text.startswith("URGENTE Clinica Teste (EMERGENCIA: deficit neurologico")
    assert "boca torta" in sms.text
    (doctor,) = outbound(to_address="medico@clinicateste.com.br")
    assert "EMERGÊNCIA" in doctor.subject and "URGENTE" in doctor.subject
    assert "déficit neurológico agudo" in doctor.text


def test_self_harm_gets_the_crisis_reply_with_cvv_and_an_oncall_alert(configure) -> None:
    configure(**QUIET)
    with time_machine.travel(NIGHT, tick=True):
        mid = file_message(SUICIDAL)
        react_to_inbound(str(mid))
        react_to_inbound(str(mid))  # a redelivered reaction sends nothing twice
    triage = triage_of(mid)
    assert triage["urgency"] == "very_urgent" and triage["discriminator"] == "self_harm"
    (reply,) = outbound(purpose="auto_reply")
    assert reply.template == "resposta_crise"
    assert "CVV 188" in reply.text and "24 horas" in reply.text and "SAMU 192" in reply.text
    assert "horário comercial" not in reply.text
    (sms,) = outbound(to_address=ONCALL)
    assert "MUITO URGENTE" in sms.text and "ideacao suicida" in sms.text


def test_every_message_of_a_patient_in_danger_is_answered_even_after_opting_out(configure) -> None:
    first = file_message(SUICIDAL)
    with session_scope() as s:
        record_opt_out(s, s.get(Message, first).contact_id, "all", "SAIR", "test")
    react_to_inbound(str(first))
    react_to_inbound(str(file_message("ja separei os comprimidos, hoje eu acabo com tudo")))
    replies = outbound(purpose="auto_reply")
    assert [r.template for r in replies] == ["resposta_crise", "resposta_crise"]
    assert all(r.status == "queued" for r in replies)
    # The second message is an emergency (a plan for today): the on-call
    # hears again although the window's very_urgent alert already went.
    assert len(outbound(to_address=ONCALL)) == 2


def test_crisis_text_and_numbers_are_configurable(configure, tmp_path) -> None:
    import shutil

    from shared.core.templating import DEFAULT_DIR

    templates = tmp_path / "templates"
    shutil.copytree(DEFAULT_DIR, templates)
    (templates / "whatsapp" / "resposta_crise.txt").write_text(
        "{{ clinica }} está com você. Ligue {{ cvv }} (CVV) ou {{ samu }}.", encoding="utf-8"
    )
    configure(TEMPLATES_DIR=str(templates), CRISIS_LINE="188", EMERGENCY_PHONE="193")
    react_to_inbound(str(file_message(SUICIDAL)))
    (reply,) = outbound(purpose="auto_reply")
    assert reply.text == "Clinica Teste está com você. Ligue 188 (CVV) ou 193."


def test_safety_replies_can_be_turned_off_and_the_ack_comes_back(configure) -> None:
    configure(SAFETY_REPLIES_ENABLED="false")
    react_to_inbound(str(file_message(STROKE)))
    (ack,) = outbound(purpose="auto_reply")
    assert ack.template == "menu_opcoes"
    assert len(outbound(to_address=ONCALL)) == 1


def test_mild_resolved_symptom_alerts_nobody_and_gets_the_normal_ack(configure) -> None:
    mid = file_message(MILD_RESOLVED)
    react_to_inbound(str(mid))
    triage = triage_of(mid)
    assert triage["urgency"] == "routine" and triage["urgent"] is False
    assert outbound(to_address=ONCALL) == []
    assert [a.template for a in outbound(purpose="auto_reply")] == ["menu_opcoes"]
    assert all("URGENTE" not in (a.subject or "") for a in outbound(purpose="alert"))


def test_urgent_grade_gets_the_normal_ack_and_labels_show_grade_and_sign(configure) -> None:
    mid = file_message("to com febre de 39 desde ontem e dor no corpo")
    react_to_inbound(str(mid))
    triage = triage_of(mid)
    assert triage["urgency"] in ("urgent", "very_urgent")
    assert triage["discriminator"] == "high_fever"
    assert [a.template for a in outbound(purpose="auto_reply")] == ["menu_opcoes"]
    with session_scope() as s:
        labels = conversation_labels(s, s.get(Message, mid).conversation_id)
    assert "urgente" in labels and f"urgencia-{triage['urgency']}" in labels
    assert "sinal-high_fever" in labels


def test_email_patient_gets_the_samu_reply_by_email(configure) -> None:
    react_to_inbound(str(file_message(
        "meu filho de 2 anos engoliu uma bateria de relogio agora", channel="email",
        contact={"name": "Ana", "email": "ana@exemplo.com"},
    )))
    (reply,) = outbound(purpose="auto_reply")
    assert (reply.channel, reply.to_address) == ("email", "ana@exemplo.com")
    assert reply.subject == "Clinica Teste: procure atendimento de emergência agora"
    assert "SAMU 192" in reply.text


# --- end to end: real ingest app, real workers, the fake Twilio, at 02:00 -----------


def _zone_where_it_is_two_am(now: datetime) -> str:
    """A fixed-offset zone whose local time is 02:xx now (Etc/GMT signs are
    inverted: Etc/GMT-3 is UTC+3)."""
    offset = (2 - now.hour) % 24
    if offset > 14:
        offset -= 24
    return f"Etc/GMT{-offset:+d}" if offset else "Etc/GMT"


@pytest.fixture
def twilio() -> Iterator[FakeTwilio]:
    with FakeTwilio() as fake:
        yield fake


def _post(client, text: str, phone: str, name: str) -> None:
    payload = seed_payload()
    payload["contact"] = {"name": name, "phone": phone}
    payload["message"] = {"text": text}
    body = dumps(payload)
    assert client.post("/api/webhook", data=body, headers=sign_headers(body)).status_code == 202


def test_end_to_end_at_two_am_stroke_and_crisis_answered_mild_alerts_nobody(
    configure, client, celery_worker, twilio
) -> None:
    zone = _zone_where_it_is_two_am(datetime.now(UTC))
    env = {
        **AUTOMATION_ENV,
        **QUIET,
        **twilio.env(),
        "CLINIC_TIMEZONE": zone,
        "RATE_LIMIT_SMS": "1000/second",
        "RATE_LIMIT_WHATSAPP": "1000/second",
        "RATE_LIMIT_WHATSAPP_PAIR": "1000/second",
    }
    configure(**env)
    assert datetime.now(ZoneInfo(zone)).hour in (1, 2, 3)  # quiet hours at the clinic
    celery_worker(queues="inbound,whatsapp,email,sms", env=env)

    def sent_to(number: str, contains: str) -> list:
        return [r for r in twilio.sends()
                if r.form.get("To", "").endswith(number) and contains in r.form.get("Body", "")]

    started = time.monotonic()
    _post(client, STROKE, "+5511955551111", "Rita Alves")
    _post(client, SUICIDAL, "+5511955552222", "Paulo Dias")
    _post(client, MILD_RESOLVED, "+5511955553333", "Lia Reis")

    wait_for(lambda: sent_to(ONCALL, "EMERGENCIA"), timeout=60)
    wait_for(lambda: sent_to("+5511955551111", "SAMU 192"), timeout=60)
    wait_for(lambda: sent_to("+5511955552222", "CVV 188"), timeout=60)
    wait_for(lambda: sent_to(ONCALL, "ideacao suicida"), timeout=60)
    elapsed = time.monotonic() - started
    assert elapsed < 60, elapsed  # seconds, not the next morning

    def all_triaged() -> bool:
        with session_scope() as s:
            rows = s.scalars(select(Message).where(Message.direction == "inbound")).all()
            return len(rows) == 3 and all(m.triage for m in rows)

    wait_for(all_triaged, timeout=60)
    time.sleep(2)  # anything the mild message would trigger has had time to go
    mild_phone = "+5511955553333"
    assert [r for r in twilio.sends() if r.form.get("To", "").endswith(mild_phone)] == []
    oncall = [r for r in twilio.sends() if r.form.get("To", "") == ONCALL]
    assert len(oncall) == 2 and not any("febre baixa" in r.form["Body"] for r in oncall)
    with session_scope() as s:
        mild = s.scalars(select(Message).where(Message.to_address == mild_phone)).all()
    assert mild == []  # held by quiet hours, alerting nobody
    get_settings.cache_clear()


def _conversation_triage(message_id) -> tuple[str | None, str | None]:
    from shared.core.models import Conversation

    with session_scope() as s:
        conv = s.get(Conversation, s.get(Message, message_id).conversation_id)
        return conv.last_inbound_urgency, conv.last_inbound_intent


def test_conversation_keeps_the_triage_of_its_last_inbound_message(configure) -> None:
    """The console lists and filters conversations by the copy kept on the
    conversation: it is the LAST inbound message's triage — none while that
    one is untriaged, never an older message's triaged late — and goes with
    an erasure."""
    from shared.contacts.admin import erase_contact

    older = file_message(STROKE)
    assert _conversation_triage(older) == (None, None)  # filed, not triaged yet
    react_to_inbound(str(older))
    assert _conversation_triage(older) == ("emergency", triage_of(older)["intent"])

    newer = file_message(MILD_RESOLVED)
    assert _conversation_triage(newer) == (None, None)  # the last one is untriaged
    react_to_inbound(str(newer))
    assert _conversation_triage(newer)[0] == "routine"

    # Triaged out of order: a message filed before the last one changes nothing.
    late = file_message(SUICIDAL, at=datetime.now(UTC).replace(year=2020))
    react_to_inbound(str(late))
    assert triage_of(late)["urgency"] == "very_urgent"
    assert _conversation_triage(newer)[0] == "routine"

    with session_scope() as s:
        contact_id = s.get(Message, newer).contact_id
        erase_contact(s, contact_id, "test")
    assert _conversation_triage(newer) == (None, None)
