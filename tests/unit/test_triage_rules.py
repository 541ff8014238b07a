"""Triage by the rules: Portuguese (accents, case, typos, abbreviations),
intents and lead score. The optional model is in
tests/integration/test_triage_model.py (it needs a local fake model server)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from shared.triage import triage
from shared.triage.intent_model import IntentModel
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
        # Rescheduling is cancelamento, as tests/data/TRIAGE_DATASET.md labels it.
        ("queria remarcar pra outro dia", "cancelamento"),
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


@pytest.mark.parametrize(
    "text",
    [
        "remarca a consulta do meu filho pra semana q vem pfv",
        "nao vou conseguir ir amanha, pode remarcar?",
        "preciso reagendar a sessao de quinta",
        "vou viajar, remarcar a limpeza",
    ],
)
def test_rescheduling_is_a_cancellation_by_the_keyword_rules(text: str) -> None:
    result = triage_rules(text, use_model=False)
    assert result.keyword_intent == "cancelamento", result.scores
    assert triage_rules(text).intent == "cancelamento"


def test_cancelling_next_to_another_question_is_a_cancellation() -> None:
    # The labelling priority: cancelamento > confirmacao > agendamento > preco ...
    text = "preciso desmarcar a limpeza de sabado e aproveitando qnto custa o clareamento?"
    assert triage_rules(text, use_model=False).intent == "cancelamento"
    assert triage_rules("confirmo a consulta de amanha, e qual o valor do retorno?",
                        use_model=False).intent == "confirmacao"


@pytest.mark.parametrize(
    "text",
    [
        "ela engole chiclete as vezes, faz mal?",
        "minha pressao deu 13 por 8 hoje, ta bom?",
        "botox de 5 dias ainda nao pegou, normal?",
    ],
)
def test_is_it_bad_or_normal_questions_are_about_the_procedure(text: str) -> None:
    assert triage_rules(text, use_model=False).intent == "informacao_procedimento"
    assert triage_rules(text).intent == "informacao_procedimento"


@pytest.mark.parametrize(
    "text",
    [
        "qual o endereco da clinica? tem estacionamento?",
        "que horas vcs fecham no sabado?",
    ],
)
def test_address_and_opening_hours_are_outro(text: str) -> None:
    assert triage_rules(text).intent == "outro"


class _AlwaysCancels(IntentModel):
    def __init__(self) -> None:
        super().__init__(None)

    def decision(self, text: str) -> dict[str, float]:
        return {intent: 1.0 if intent == "cancelamento" else -1.0 for intent in INTENTS}


@pytest.mark.parametrize(
    "text",
    ["URGENTE me responde por favor", "to com muita dor e a cicatriz ta vermelha"],
)
def test_the_intent_model_never_changes_the_urgency(text: str) -> None:
    alone = triage_rules(text, use_model=False)
    with_model = triage_rules(text, intent_model=_AlwaysCancels())
    assert alone.urgent
    # An administrative intent would silence a declared urgency if the grade
    # read the model's intent.
    assert with_model.intent == "cancelamento"
    assert (with_model.urgency, with_model.discriminator, with_model.urgency_reasons) == (
        alone.urgency, alone.discriminator, alone.urgency_reasons)


def test_strong_keywords_decide_over_the_model() -> None:
    assert triage_rules("quanto custa o botox?", intent_model=_AlwaysCancels()).intent == "preco"


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


def test_a_sign_denied_after_it_is_named_is_absent() -> None:
    from shared.triage.urgency import assess

    assert assess("o nariz escorre mas febre nao teve nenhuma, come bem").grade == "routine"
    assert assess("tosse seca, febre nenhuma").grade == "routine"
    # "nao baixa" after the fever is its persistence, not a denial
    assert assess("a febre do meu marido nao baixa desde ontem").grade != "routine"


def test_an_alarming_sign_that_passed_recently_is_still_seen_today() -> None:
    from shared.triage.urgency import assess

    assert assess("desmaiei ontem na fila do mercado mas voltei normal, hj to bem").grade == \
        "urgent"
    assert assess("ontem tive um aperto no peito que passou sozinho").grade == "urgent"
    # a brief palpitation that passed, or a pain a doctor already explained, is not
    assert assess("tive uma palpitacao rapidinha ontem, ja passou").grade == "routine"
    assert assess("a dor no peito de ontem era muscular como a dra disse, ja passou").grade == \
        "routine"


def test_a_year_makes_an_event_history_even_with_today_in_the_sentence() -> None:
    from shared.triage.urgency import assess

    assert assess("meu pai teve um infarto em 2018, hoje ta otimo, quer o checkup").grade == \
        "routine"
    assert assess("tive avc em 2020 e agora a boca entortou de novo").grade == "emergency"


def test_idioms_are_not_alarms() -> None:
    from shared.triage.urgency import assess

    assert assess("esse orcamento vai me matar kkk").grade == "routine"
    assert assess("a mensalidade ta me dando um infarto rs").grade == "routine"
    # everyday words one typo away from a sign ("demais" ~ "desmai*", "fatura" ~ "fratur*")
    assert assess("dor no joelho faz meses, nada demais").grade == "routine"
    assert assess("paguei a fatura da consulta").grade == "routine"
    # a real intent is still read
    assert assess("quero me matar hoje").grade == "emergency"


def test_asking_whether_a_finding_is_serious_is_not_a_declared_urgency() -> None:
    assert triage_rules("o exame deu sopro leve, isso e grave? nao sinto nada",
                        use_model=False).urgency == "routine"
    assert triage_rules("estou muito mal, e grave, preciso de ajuda",
                        use_model=False).urgency == "urgent"


def test_non_attenuable_signs_ignore_mild_words_and_is_it_normal() -> None:
    from shared.triage.urgency import assess

    assert assess("fiz preenchimento ontem e a pele ta meio roxa rendada").grade == \
        "very_urgent"
    assert assess("to de 34 semanas e ta escorrendo agua pela perna, e normal?").grade == \
        "very_urgent"
