"""Triage with the optional model and the rules as fallback: a local fake
model server (tests/fakes/ai_model.py) answers, fails, hangs or is stopped."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from shared.triage import triage
from shared.triage.rules import triage_rules
from tests.fakes.ai_model import FakeAiModel


@pytest.fixture
def model() -> Iterator[FakeAiModel]:
    fake = FakeAiModel()
    yield fake
    fake.stop()


def ai_settings(settings, model: FakeAiModel, **extra):
    return settings.model_copy(
        update={
            "ENABLE_AI_ANALYSIS": True,
            "AI_API_BASE_URL": model.base_url,
            "AI_API_KEY": "sk-test",
            "AI_MODEL": "tiny-model",
            "AI_TIMEOUT_SECONDS": 0.5,
            **extra,
        }
    )


def test_model_answer_is_used_when_valid(settings, model) -> None:
    model.answer = {"intent": "qualificacao", "urgent": False, "sentiment": "positivo"}
    result = triage("amei o resultado da minha amiga", settings=ai_settings(settings, model))
    assert result.source == "rules+ai"
    assert result.intent == "qualificacao" and result.sentiment == "positivo"
    assert result.rules_intent == triage_rules("amei o resultado da minha amiga").intent
    sent = model.requests[0]
    assert sent["model"] == "tiny-model"
    assert sent["messages"][-1] == {"role": "user", "content": "amei o resultado da minha amiga"}
    assert model.headers[0]["Authorization"] == "Bearer sk-test"


def test_model_can_raise_urgency_but_never_silence_it(settings, model) -> None:
    s = ai_settings(settings, model)
    model.answer = {"intent": "outro", "urgent": True, "sentiment": "negativo"}
    raised = triage("nao me sinto bem desde a cirurgia", settings=s)
    assert raised.urgent and "ai" in raised.urgency_reasons

    model.answer = {"intent": "informacao_procedimento", "urgent": False, "sentiment": "neutro"}
    kept = triage("estou com febre de 39", settings=s)
    assert kept.urgent and kept.source == "rules+ai"


def test_model_timeout_falls_back_to_rules_quickly(settings, model) -> None:
    model.delay_seconds = 3
    started = time.monotonic()
    result = triage("qto custa a lipo?", settings=ai_settings(settings, model))
    assert time.monotonic() - started < 2.5
    assert result.source == "rules" and result.ai_error == "timeout"
    assert result.intent == "preco"


@pytest.mark.parametrize(
    ("answer", "status"),
    [
        ("Claro! A intenção é preço.", 200),  # prose, not JSON
        ({"intent": "comprar", "urgent": False}, 200),  # label outside our vocabulary
        ({"intent": "preco"}, 200),  # urgent missing
        ({"intent": "preco", "urgent": False}, 503),
    ],
)
def test_invalid_or_failed_model_answers_keep_the_rules(settings, model, answer, status) -> None:
    model.answer, model.status = answer, status
    result = triage("quero agendar avaliação", settings=ai_settings(settings, model))
    assert result.source == "rules" and result.ai_error
    assert result.intent == "agendamento"


def test_model_unreachable_keeps_the_rules(settings, model) -> None:
    s = ai_settings(settings, model)
    model.stop()
    result = triage("to sangrando", settings=s)
    assert result.urgent and result.source == "rules"
    assert result.ai_error.startswith("connection error")


def test_model_not_called_when_disabled(settings, model) -> None:
    triage("quero agendar", settings=ai_settings(settings, model, ENABLE_AI_ANALYSIS=False))
    triage("quero agendar", settings=ai_settings(settings, model, AI_API_BASE_URL=""))
    assert model.requests == []


def test_fenced_json_answer_is_accepted(settings, model) -> None:
    model.answer = '```json\n{"intent": "preco", "urgent": false, "sentiment": "neutro"}\n```'
    result = triage("e ai, quanto?", settings=ai_settings(settings, model))
    assert result.source == "rules+ai" and result.intent == "preco"


def test_model_may_raise_the_grade_but_never_lower_it(settings, model) -> None:
    s = ai_settings(settings, model)
    model.answer = {"intent": "outro", "urgent": True, "urgency": "emergency",
                    "sentiment": "negativo"}
    raised = triage("meu pai ta estranho, nao sei explicar", settings=s)
    assert raised.urgency == "emergency" and raised.discriminator == "ai"
    assert raised.urgency_reasons == ["ai"]

    model.answer = {"intent": "outro", "urgent": False, "urgency": "routine",
                    "sentiment": "neutro"}
    kept = triage("minha mae ta com a boca torta e falando enrolado", settings=s)
    assert kept.source == "rules+ai"
    assert kept.urgency == "emergency" and kept.discriminator == "acute_neuro_deficit"

    model.answer = {"intent": "outro", "urgent": True, "urgency": "emergency",
                    "sentiment": "negativo"}
    higher = triage("estou com febre", settings=s)  # rules: urgent, high_fever
    assert higher.urgency == "emergency" and higher.discriminator == "high_fever"
    assert higher.urgency_reasons == ["high_fever", "ai"]

