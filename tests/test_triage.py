"""Triage: Portuguese rules (accents, case, typos, abbreviations), lead score,
and the optional model with the rules as fallback (a local fake model server)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from shared.triage import triage
from shared.triage.rules import INTENTS, LEAD_SCORES, SENTIMENTS, triage_rules
from shared.triage.text import normalize
from tests.fakes.ai_model import FakeAiModel


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


# --- the model, with the rules as fallback -------------------------------------


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


@hypothesis_settings(max_examples=300, deadline=None)
@given(st.text(max_size=400))
def test_rules_never_fail_and_answer_in_vocabulary(text: str) -> None:
    result = triage_rules(text)
    assert result.intent in INTENTS and result.sentiment in SENTIMENTS
    assert isinstance(result.urgent, bool)


def test_lead_scores_are_in_vocabulary(settings) -> None:
    for text in ("oi", "quero agendar", "qto custa", "cancela"):
        assert triage(text, settings=settings).lead_score in LEAD_SCORES


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


# --- urgency modifiers: the readings behind the discriminator table's signs ---------


def test_weeks_abbreviated_as_sem_are_weeks_not_without() -> None:
    from shared.triage.urgency import assess

    # "35 sem dor de cabeca" would otherwise negate the headache
    result = assess("gravida de 35 sem dor de cabeca forte e vendo pontinhos brilhando")
    assert "pregnancy" in result.contexts
    assert result.grade == "emergency" and result.discriminator == "pregnancy_bleeding"
    early = assess("to com 8 sem e saiu um pouco de sangue marrom")
    assert "pregnancy" in early.contexts and early.grade != "routine"
    # a plain "sem" is still a negation
    assert assess("estou sem dor de cabeca e sem febre").grade == "routine"


def test_a_babys_age_in_months_or_weeks_makes_it_a_baby() -> None:
    from shared.triage.urgency import assess

    young = assess("o pai aqui, ela tem 6 semanas e ta com 38 de febre")
    assert "young_infant" in young.contexts and young.grade == "emergency"
    # "tem 2 meses que" is a duration, not an age
    assert "young_infant" not in assess("ja tem 2 meses que estou com febre a noite").contexts


def test_mildness_stays_in_its_clause() -> None:
    from shared.triage.urgency import assess

    # "um pouco" qualifies the dehiscence, not the discharge after "e saindo"
    assert assess("fiz abdomino, o ponto abriu um pouco e saindo secrecao amarela").grade == \
        "urgent"
    # right after the "e" it qualifies both adjectives
    assert assess("fiz botox ontem e ta um pouco inchado e vermelho, e normal?").grade == \
        "routine"


def test_idioms_and_played_down_messages_are_routine() -> None:
    for text in ("essa fila me mata kkk, quanto tempo demora a primeira consulta?",
                 "esse calor me mata, voces tem ar condicionado na recepcao?",
                 "nao e nada urgente, so queria saber o horario de sabado",
                 "tenho umas espinhas, nada grave, quanto custa a limpeza de pele?",
                 "essa dor nas costas ta me matando rs mas e leve, pilates ajuda?"):
        assert triage_rules(text).urgency == "routine", text
    # the same verbs, meant
    assert triage_rules("vou me mata hoje, nao aguento mais").urgency == "emergency"


def test_past_events_told_with_todays_age_stay_history() -> None:
    from shared.triage.urgency import assess

    # "hoje com 5 anos" gives her age; it does not make the seizure current
    assert assess("ela teve convulsao febril quando era nenem, hoje com 5 anos pode "
                  "tomar vacina?").grade == "routine"
    assert assess("ele teve convulsao ano passado e hoje convulsionou de novo").grade == \
        "emergency"


def test_near_homographs_do_not_attenuate_or_alarm() -> None:
    from shared.triage.urgency import assess

    # "as fezes" is not "as vezes" (sometimes): the blood is not made mild
    assert assess("o nenem chora e as fezes estao com sangue tipo geleia").grade == \
        "very_urgent"
    # a heart racing with joy is a feeling
    assert assess("meu coracao disparou de alegria com a noticia").grade == "routine"
    assert assess("meu coracao disparou do nada e nao para").grade != "routine"
