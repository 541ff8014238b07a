"""Automations on real PostgreSQL and Redis: triage stored, auto-acks once per
window, team alerts routed by intent, urgent → on-call SMS (+ re-alert),
opt-outs, quiet hours, consumed replies, redelivery and concurrency; and end
to end through a real worker."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import time_machine
from sqlalchemy import func, select

from shared.contacts.optouts import record_opt_out
from shared.core.config import get_settings
from shared.core.db import session_scope
from shared.core.models import AutomationRun, Conversation, Message
from shared.inbound.automations import realert_unanswered_urgent, run_automations
from shared.inbound.filing import file_inbound_message
from shared.inbound.reactions import ReactionContext, react_to_inbound
from tests.helpers import dumps, seed_payload, sign_headers, wait_for

PATIENT_PHONE = "+5511988887777"
ONCALL = "+5511977776666"
TEAM = {
    "EMAIL_MEDICO": "medico@clinicateste.com.br",
    "EMAIL_FINANCEIRO": "financeiro@clinicateste.com.br",
    "EMAIL_SUPORTE": "suporte@clinicateste.com.br",
}
AUTOMATION_ENV = {
    **TEAM,
    "ONCALL_PHONE": ONCALL,
    "AUTO_ACK_ENABLED": "true",
    "QUIET_HOURS_CHANNELS": "",  # these tests are not about quiet hours
    "AUTOMATION_WINDOW_HOURS": "24",
    "URGENT_REALERT_MINUTES": "15",
    "CLINIC_NAME": "Clinica Teste",
}


@pytest.fixture
def configure(monkeypatch, redis_client) -> Iterator:
    """Set environment variables for this test and reload the settings; start
    from empty send queues (the autouse cleanup only removes clinicq:* keys)."""
    redis_client.delete("whatsapp", "email", "sms", "inbox")

    def apply(**env: str) -> None:
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        get_settings.cache_clear()

    apply(**AUTOMATION_ENV)
    yield apply
    monkeypatch.undo()
    get_settings.cache_clear()


def file_message(text: str, channel: str = "whatsapp", contact: dict | None = None,
                 at: datetime | None = None) -> uuid.UUID:
    message_id = uuid.uuid4()
    payload = {
        "type": "message",
        "channel": channel,
        "contact": contact or {"name": "Maria Souza", "phone": PATIENT_PHONE},
        "message": {"text": text, "timestamp": None, "metadata": None},
        "received_at": (at or datetime.now(UTC)).isoformat(),
        "source": "webhook",
    }
    with session_scope() as s:
        assert file_inbound_message(s, str(message_id), payload) is not None
    return message_id


def outbound(**where) -> list[Message]:
    with session_scope() as s:
        q = select(Message).where(Message.direction == "outbound").order_by(Message.created_at)
        for name, value in where.items():
            q = q.where(getattr(Message, name) == value)
        return list(s.scalars(q))


def queue_len(redis_client, queue: str) -> int:
    from shared.core.taskqueue import queue_lists

    return sum(redis_client.llen(key) for key in queue_lists(queue))


def test_price_question_is_triaged_acknowledged_and_routed_to_finance(configure, redis_client) -> None:
    mid = file_message("qto custa a lipo? pfv")
    react_to_inbound(str(mid))

    with session_scope() as s:
        triage = s.get(Message, mid).triage
    assert triage["intent"] == "preco" and triage["urgent"] is False
    assert triage["lead_score"] in ("warm", "hot") and triage["source"] == "rules"

    acks = outbound(purpose="auto_reply")
    assert len(acks) == 1
    ack = acks[0]
    assert (ack.channel, ack.to_address, ack.status) == ("whatsapp", PATIENT_PHONE, "queued")
    assert ack.template == "menu_opcoes" and "AGENDAR" in ack.text and "Maria" in ack.text
    alerts = outbound(purpose="alert")
    assert [(a.channel, a.to_address) for a in alerts] == [("email", "financeiro@clinicateste.com.br")]
    assert "preco" in alerts[0].subject and "qto custa a lipo" in alerts[0].text
    # Sends were published only after the commit, one per message.
    assert queue_len(redis_client, "whatsapp") == 1
    assert queue_len(redis_client, "email") == 1
    assert queue_len(redis_client, "sms") == 0


def test_second_message_in_window_gets_no_second_ack_but_new_team_is_told(configure) -> None:
    react_to_inbound(str(file_message("qual o valor da rinoplastia?")))
    react_to_inbound(str(file_message("e parcela em quantas vezes?")))
    assert len(outbound(purpose="auto_reply")) == 1
    assert [a.to_address for a in outbound(purpose="alert")] == ["financeiro@clinicateste.com.br"]

    react_to_inbound(str(file_message("quantos dias de repouso depois da rino?")))
    assert len(outbound(purpose="auto_reply")) == 1
    assert [a.to_address for a in outbound(purpose="alert")] == [
        "financeiro@clinicateste.com.br",
        "medico@clinicateste.com.br",
    ]


def test_after_the_window_the_patient_is_acknowledged_again(configure) -> None:
    configure(AUTOMATION_WINDOW_HOURS="2")
    react_to_inbound(str(file_message("bom dia, queria agendar")))
    with time_machine.travel(datetime.now(UTC) + timedelta(hours=3), tick=True):
        react_to_inbound(str(file_message("alguem ai?")))
    assert len(outbound(purpose="auto_reply")) == 2


def test_urgent_message_reaches_oncall_once_and_the_doctor(configure, redis_client) -> None:
    first = file_message("Dr to com febre e sangrando muito depois da lipo")
    react_to_inbound(str(first))
    react_to_inbound(str(file_message("por favor me respondam, ta sangrando")))

    sms = outbound(channel="sms")
    assert len(sms) == 1
    assert sms[0].to_address == ONCALL and sms[0].text.startswith("URGENTE Clinica Teste")
    assert "febre" in sms[0].text and sms[0].purpose == "alert"
    medico = outbound(to_address="medico@clinicateste.com.br")
    assert len(medico) == 1 and "URGENTE" in medico[0].subject
    with session_scope() as s:
        msg = s.get(Message, first)
        assert msg.triage["urgent"] and msg.triage["urgency_reasons"]
        assert s.get(Conversation, msg.conversation_id).needs_agent is True
    assert queue_len(redis_client, "sms") == 1


def test_unanswered_urgent_is_realerted_once(configure) -> None:
    react_to_inbound(str(file_message("socorro, minha cicatriz abriu")))
    now = datetime.now(UTC)
    assert realert_unanswered_urgent(now + timedelta(minutes=5)) == 0  # not yet due
    assert realert_unanswered_urgent(now + timedelta(minutes=16)) == 1
    assert realert_unanswered_urgent(now + timedelta(minutes=40)) == 0  # once
    sms = outbound(channel="sms")
    assert len(sms) == 2
    assert "sem resposta" in sms[1].text and sms[1].to_address == ONCALL


def test_answered_urgent_is_not_realerted(configure) -> None:
    mid = file_message("urgente, to passando mal")
    react_to_inbound(str(mid))
    with session_scope() as s:
        conv_id = s.get(Message, mid).conversation_id
        s.add(Message(id=uuid.uuid4(), conversation_id=conv_id, channel="whatsapp",
                      direction="outbound", purpose="agent_reply", text="Estamos ligando",
                      status="queued", created_at=datetime.now(UTC) + timedelta(seconds=1)))
    assert realert_unanswered_urgent(datetime.now(UTC) + timedelta(minutes=30)) == 0


def test_opted_out_patient_gets_no_ack_but_the_team_is_alerted(configure, redis_client) -> None:
    mid = file_message("quero marcar avaliação")
    with session_scope() as s:
        record_opt_out(s, s.get(Message, mid).contact_id, "all", "SAIR", "test")
    react_to_inbound(str(mid))
    (ack,) = outbound(purpose="auto_reply")
    assert ack.status == "skipped" and "opted out" in ack.status_reason
    assert queue_len(redis_client, "whatsapp") == 0
    assert [a.to_address for a in outbound(purpose="alert")] == ["suporte@clinicateste.com.br"]


def test_consumed_reply_gets_no_ack_and_no_team_alert(configure) -> None:
    mid = file_message("SIM")
    ctx = ReactionContext(message_id=mid, consumed=True)
    with session_scope() as s:
        run_automations(s, ctx)
    assert outbound() == []
    with session_scope() as s:
        assert s.get(Message, mid).triage["intent"] == "confirmacao"


def test_quiet_hours_hold_acks_and_alerts_but_not_urgent_handling(configure) -> None:
    configure(QUIET_HOURS_CHANNELS="email,sms,whatsapp", QUIET_HOURS_START="20:00",
              QUIET_HOURS_END="08:00", HOLIDAYS="")
    night = datetime(2030, 3, 12, 23, 30, tzinfo=ZoneInfo("America/Sao_Paulo"))
    with time_machine.travel(night, tick=True):
        react_to_inbound(str(file_message("qual o valor do botox?")))
        assert outbound() == []
        with session_scope() as s:
            assert s.scalar(select(func.count()).select_from(AutomationRun)) == 0
        react_to_inbound(str(file_message("to com muita dor e febre")))
    assert len(outbound(to_address=ONCALL)) == 1
    assert len(outbound(to_address="medico@clinicateste.com.br")) == 1
    assert len(outbound(purpose="auto_reply")) == 1  # part of urgent handling


def test_email_and_web_messages_are_acknowledged_by_email(configure) -> None:
    react_to_inbound(str(file_message("Gostaria de informações", channel="email",
                                      contact={"name": "Ana", "email": "ana@exemplo.com"})))
    react_to_inbound(str(file_message("quero agendar", channel="web",
                                      contact={"name": "Bia", "email": "bia@exemplo.com",
                                               "phone": "+5521999990000"})))
    acks = outbound(purpose="auto_reply")
    assert [(a.channel, a.to_address) for a in acks] == [
        ("email", "ana@exemplo.com"),
        ("email", "bia@exemplo.com"),
    ]
    assert all(a.subject == "Clinica Teste: recebemos sua mensagem" for a in acks)


def test_sms_ack_carries_a_link_to_follow(configure) -> None:
    mid = file_message("quero agendar", channel="sms")
    react_to_inbound(str(mid))
    (ack,) = outbound(purpose="auto_reply")
    assert ack.channel == "sms" and f"https://clinicq.test/api/messages/{mid}?token=" in ack.text


def test_redelivered_reaction_creates_nothing_twice(configure, redis_client) -> None:
    mid = file_message("to com febre")
    react_to_inbound(str(mid))
    react_to_inbound(str(mid))
    assert len(outbound(purpose="auto_reply")) == 1
    assert len(outbound(to_address=ONCALL)) == 1
    assert len(outbound(to_address="medico@clinicateste.com.br")) == 1
    # The redelivery re-publishes still-queued sends (claiming makes it harmless).
    assert queue_len(redis_client, "sms") == 2


def test_concurrent_messages_of_one_conversation_ack_once(configure) -> None:
    first = file_message("oi")
    ids = [first] + [file_message(f"oi de novo {i}") for i in range(3)]
    errors: list[BaseException] = []

    def react(mid: uuid.UUID) -> None:
        try:
            react_to_inbound(str(mid))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=react, args=(mid,)) for mid in ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    assert len(outbound(purpose="auto_reply")) == 1


def test_missing_team_address_and_oncall_only_skip(configure, monkeypatch) -> None:
    monkeypatch.delenv("ONCALL_PHONE")
    monkeypatch.delenv("EMAIL_MEDICO")
    get_settings.cache_clear()
    mid = file_message("emergencia")
    ctx = react_to_inbound(str(mid))
    assert ctx.notes["oncall"] == "skipped: ONCALL_PHONE not set"
    assert ctx.notes["team_alert"] == "skipped: no address for medico"
    assert len(outbound(purpose="auto_reply")) == 1


def test_end_to_end_webhook_to_acknowledgement_sent_by_real_workers(configure, client, celery_worker) -> None:
    celery_worker(queues="inbound,whatsapp,email,sms", env=AUTOMATION_ENV)
    payload = seed_payload()
    payload["contact"] = {"name": "Joana Lima", "phone": "+5511966665555"}
    payload["message"] = {"text": "oi, qto custa a mamoplastia?"}
    body = dumps(payload)
    assert client.post("/api/webhook", data=body, headers=sign_headers(body)).status_code == 202
    wait_for(lambda: len(outbound(purpose="auto_reply")) == 1, timeout=60)
    second = seed_payload()
    second["contact"] = {"phone": "+5511966665555"}
    second["message"] = {"text": "e parcela?"}
    body = dumps(second)
    assert client.post("/api/webhook", data=body, headers=sign_headers(body)).status_code == 202

    def settled() -> bool:
        with session_scope() as s:
            inbound = s.scalars(select(Message).where(Message.direction == "inbound")).all()
            return len(inbound) == 2 and all(m.triage for m in inbound)

    wait_for(settled, timeout=60)
    # The delivery workers send it (outbox provider without credentials).
    wait_for(lambda: outbound(purpose="auto_reply")[0].status in ("sent", "delivered"), timeout=60)
    assert len(outbound(purpose="auto_reply")) == 1
    assert [a.to_address for a in outbound(purpose="alert")] == ["financeiro@clinicateste.com.br"]


def test_unrenderable_templates_skip_the_automation_but_keep_the_triage(configure, tmp_path) -> None:
    configure(TEMPLATES_DIR=str(tmp_path))  # an empty templates directory
    mid = file_message("qual o valor?")
    ctx = react_to_inbound(str(mid))
    assert ctx.notes["auto_ack"] == "skipped: template does not render"
    assert outbound() == []
    with session_scope() as s:
        assert s.get(Message, mid).triage["intent"] == "preco"


def test_model_verdict_is_stored_and_drives_routing(configure) -> None:
    from tests.fakes.ai_model import FakeAiModel

    model = FakeAiModel()
    try:
        model.answer = {"intent": "preco", "urgent": False, "sentiment": "neutro"}
        configure(ENABLE_AI_ANALYSIS="true", AI_API_BASE_URL=model.base_url, AI_TIMEOUT_SECONDS="2")
        mid = file_message("e aquele procedimento do nariz, sai por quanto mais ou menos")
        react_to_inbound(str(mid))
        with session_scope() as s:
            triage = s.get(Message, mid).triage
        assert triage["source"] == "rules+ai" and triage["intent"] == "preco"
        assert [a.to_address for a in outbound(purpose="alert")] == ["financeiro@clinicateste.com.br"]
        assert model.requests[-1]["messages"][-1]["content"].startswith("e aquele procedimento")
    finally:
        model.stop()
