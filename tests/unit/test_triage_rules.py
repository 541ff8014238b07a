"""Triage by the rules: Portuguese (accents, case, typos, abbreviations),
intents and lead score. The optional model is in
tests/integration/test_triage_model.py (it needs a local fake model server)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from shared.triage import triage
from shared.triage.rules import INTENTS, LEAD_SCORES, SENTIMENTS, triage_rules
from shared.triage.text import normalize


def test_normalize_strips_accents_case_stretching_and_expands_abbreviations() -> None:
    assert normalize("EMERGÊNCIA!!! Tô com DOOOR") == "emergencia estou com dor"
    assert normalize("qto custa? pfv") == "quanto custa por favor"
    assert normalize("vc tem horário hj?") == "voce tem horario hoje"


@pytest.mark.parametrize(
    "text",
    [
        "Estou com febre desde ontem",
        "to com FEBRI alta",
        "URGENTEEE",
        "é urgenti",
        "Emergência",
        "emergencia",
        "EMERGENSIA por favor",
        "o corte ta sangrano",
        "esta sangrando muito",
        "minha barriga ta muito inxada depois da lipo",
        "sinto uma dorr forte na perna",
        "saiu pus do ponto",
        "estou com falta de ar",
        "socorro",
    ],
)
def test_urgent_despite_accents_case_and_typos(text: str) -> None:
    assert triage_rules(text).urgent, text


@pytest.mark.parametrize(
    "text",
    [
        "quanto tempo dura o inchaço da rinoplastia?",
        "qual o valor da lipo?",
        "Boa tarde, vou precisar cancelar. Minha filha ficou doente",
        "quero agendar uma avaliação",
        "obrigada, deu tudo certo",
    ],
)
def test_not_urgent_when_symptoms_are_only_asked_about_or_absent(text: str) -> None:
    assert not triage_rules(text).urgent, text


@pytest.mark.parametrize(
    ("text", "intent"),
    [
        ("SIM", "confirmacao"),
        ("1", "confirmacao"),
        ("confirmo minha presença", "confirmacao"),
        ("cancela pfv nao vou mais", "cancelamento"),
        ("queria remarcar pra outro dia", "agendamento"),
        ("qto ta o botox?", "preco"),
        ("quanto tempo de repouso depois da abdomino?", "informacao_procedimento"),
        ("tenho interesse em fazer rino mas tenho medo", "qualificacao"),
        ("qual o endereço?", "outro"),
        ("VALORES", "preco"),  # the WhatsApp menu's options
        ("Procedimentos", "informacao_procedimento"),
        ("agendar", "agendamento"),
        ("", "outro"),
    ],
)
def test_intents(text: str, intent: str) -> None:
    assert triage_rules(text).intent == intent


def test_reported_symptom_without_other_intent_is_clinical() -> None:
    result = triage_rules("to com muita dor e a cicatriz ta vermelha")
    assert result.urgent and result.intent == "informacao_procedimento"
    assert result.sentiment == "negativo"


def test_lead_score_grows_with_intent_and_engagement(settings) -> None:
    assert triage("bom dia", settings=settings).lead_score == "cold"
    assert triage("qual o valor da lipo?", settings=settings).lead_score == "warm"
    engaged = triage(
        "tem horario sabado pra avaliacao?",
        history=["qual o valor da lipo?", "quantos dias de repouso?"],
        settings=settings,
    )
    assert engaged.intent == "agendamento" and engaged.lead_score == "hot"
    assert engaged.lead_points > triage("tem horario sabado?", settings=settings).lead_points
    assert triage("cancela minha consulta", settings=settings).lead_score == "cold"


def test_to_dict_is_json_ready(settings) -> None:
    doc = triage("to com febre", settings=settings).to_dict()
    assert doc["urgent"] is True and doc["source"] == "rules"
    assert "ai_error" not in doc


@hypothesis_settings(max_examples=300, deadline=None)
@given(st.text(max_size=400))
def test_rules_never_fail_and_answer_in_vocabulary(text: str) -> None:
    result = triage_rules(text)
    assert result.intent in INTENTS and result.sentiment in SENTIMENTS
    assert isinstance(result.urgent, bool)


def test_lead_scores_are_in_vocabulary(settings) -> None:
    for text in ("oi", "quero agendar", "qto custa", "cancela"):
        assert triage(text, settings=settings).lead_score in LEAD_SCORES
