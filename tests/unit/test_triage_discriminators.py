"""The discriminator table: every discriminator is exercised by the labelled
messages, the committed clinician export is up to date, and the modifiers
(negation, attenuation, intensifiers, who the patient is) move the grade."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.triage_accuracy import HELDOUT, TUNE, load_examples
from shared.triage import discriminators as table
from shared.triage import export, triage
from shared.triage.rules import triage_rules
from shared.triage.urgency import GRADE_RANK, assess

ROOT = Path(__file__).resolve().parents[2]


def labelled() -> list:
    return [ex for path in (TUNE, HELDOUT) if path.exists() for ex in load_examples(path)]


def test_every_discriminator_is_labelled_and_fired_by_the_rules() -> None:
    examples = labelled()
    assert len(examples) >= 400
    for disc in table.DISCRIMINATORS:
        mine = [ex for ex in examples if ex.discriminator == disc.id]
        assert mine, f"no labelled message for {disc.id}"
        fired = [ex for ex in mine if disc.id in triage_rules(ex.text).urgency_reasons]
        assert fired, f"the rules never fire {disc.id} on its labelled messages"


def test_labels_use_only_table_discriminators_and_grades() -> None:
    for ex in labelled():
        assert ex.urgency in table.GRADES
        assert (ex.discriminator is None) == (ex.urgency == "routine"), ex.id
        assert ex.discriminator is None or ex.discriminator in table.BY_ID, ex.id


def test_committed_export_is_up_to_date() -> None:
    committed = (ROOT / "docs" / "triage_discriminators.md").read_text(encoding="utf-8")
    assert committed == export.render(), (
        "docs/triage_discriminators.md is stale: python -m shared.triage.export "
        "> docs/triage_discriminators.md"
    )


def test_table_is_well_formed() -> None:
    ids = [d.id for d in table.DISCRIMINATORS]
    assert len(ids) == len(set(ids)) == 19
    for disc in table.DISCRIMINATORS:
        assert disc.mts and disc.label_pt and disc.signs
        for sign in disc.signs:
            assert sign.grade in table.GRADES[1:]
            assert sign.context is None or sign.context in table.CONTEXTS


@pytest.mark.parametrize(
    ("text", "grade", "discriminator"),
    [
        # the misses
        ("minha mae ta com a boca torta e falando enrolado", "emergency", "acute_neuro_deficit"),
        ("meu filho de 2 anos engoliu uma bateria de relogio", "emergency",
         "poisoning_ingestion"),
        ("nao aguento mais viver, penso em me matar", "very_urgent", "self_harm"),
        # negation, attenuation, resolution lower the grade instead of being ignored
        ("nao tenho febre, so queria marcar um checkup", "routine", None),
        ("febre baixa que ja passou", "routine", None),
        ("doi um pouco o dente quando mastigo", "routine", None),
        ("é normal ficar um pouco inchada depois do botox?", "routine", None),
        ("nao estou com falta de ar, so tosse leve", "routine", None),
        # intensifiers raise it
        ("estou com febre", "urgent", "high_fever"),
        ("estou com febre muito alta desde ontem, piorando", "very_urgent", "high_fever"),
        ("o nariz ta sangrando", "urgent", "uncontrolled_bleeding"),
        ("o nariz ta sangrando e nao para faz uma hora", "very_urgent",
         "uncontrolled_bleeding"),
        # who the patient is
        ("meu bebe de 20 dias ta com febre de 38", "emergency", "infant_fever"),
        ("meu filho de 6 anos ta com febre", "urgent", "infant_fever"),
        ("to gravida de 30 semanas e to com sangramento", "very_urgent", "pregnancy_bleeding"),
        ("operei ha 5 dias e a panturrilha ta inchada e doendo", "very_urgent",
         "post_operative"),
        # symptom words that are the topic, not a report
        ("quero marcar o retorno do exame de sangue", "routine", None),
        ("a consulta de dor no peito do meu pai foi otima, obrigado", "routine", None),
    ],
)
def test_grades(text: str, grade: str, discriminator: str | None) -> None:
    result = assess(text)
    assert (result.grade, result.discriminator) == (grade, discriminator), result.findings


def test_self_harm_is_never_attenuated_below_very_urgent() -> None:
    for text in ("as vezes penso em me matar, mas so um pouco", "e normal pensar em suicidio?"):
        assert GRADE_RANK[assess(text).grade] >= GRADE_RANK["very_urgent"], text


def test_declared_urgency_without_a_sign() -> None:
    assert triage_rules("URGENTE me liguem").urgency == "urgent"
    assert triage_rules("URGENTE me liguem").discriminator == table.DECLARED
    assert triage_rules("preciso remarcar urgente minha consulta").urgency == "routine"


def test_stored_triage_carries_grade_discriminator_and_reasons(settings) -> None:
    doc = triage("minha mae ta com a boca torta", settings=settings).to_dict()
    assert doc["urgent"] is True and doc["urgency"] == "emergency"
    assert doc["discriminator"] == "acute_neuro_deficit"
    assert doc["urgency_reasons"][0] == "acute_neuro_deficit"
    routine = triage("qual o valor da consulta?", settings=settings).to_dict()
    assert routine["urgent"] is False and routine["urgency"] == "routine"
    assert "discriminator" not in routine


# Signs worded in ways the phrase lists do not spell out: concept groups in any
# order, scoped negation, routine mentions that must stay routine. None of these
# sentences is in the labelled data.
@pytest.mark.parametrize(
    ("text", "at_least"),
    [
        # concept groups, any word order
        ("uma pilha pequena, acho que o meu filho engoliu", "emergency"),
        ("a nenem engoliu um ima da geladeira", "emergency"),
        ("achei a cartela do anticoncepcional vazia e minha filha de 2 anos tava com ela",
         "emergency"),
        ("minha mae acordou com o lado esquerdo do rosto caido", "emergency"),
        ("a perna direita dela parou de obedecer de repente", "emergency"),
        ("meu pai ta falando tudo embolado de repente", "emergency"),
        ("meu bebe de 5 meses ta gemendo pra respirar e as costelinhas afundando", "emergency"),
        ("to com 36 semanas e o bebe ta mexendo bem menos hoje", "emergency"),
        ("tomo xarelto e o nariz ta sangrando", "very_urgent"),
        ("misturei cloro com desinfetante e respirei o vapor", "very_urgent"),
        # negation scoped to its clause, idioms that negate nothing
        ("ela comecou a falar coisa sem sentido e a boca entortou", "emergency"),
        ("nao consigo abrir a boca nem engolir saliva, o inchaco do dente foi pro pescoco",
         "emergency"),
        ("dor de dente latejando, nem dipirona segura, to sem dormir", "urgent"),
        # indirect suicidal ideation
        ("acho que o mundo ficaria mais leve sem mim", "very_urgent"),
        ("ja pensei ate em como fazer", "very_urgent"),
        ("queria dormir e nunca mais acordar", "very_urgent"),
        ("engoli uns 20 comprimidos de rivotril", "emergency"),
        ("meu marido mandou mensagem se despedindo e pegou a corda", "emergency"),
    ],
)
def test_signs_in_other_words(text: str, at_least: str) -> None:
    result = assess(text)
    assert GRADE_RANK[result.grade] >= GRADE_RANK[at_least], (text, result.findings)


@pytest.mark.parametrize(
    "text",
    [
        "tomei os remedios certinho essa semana e to dormindo melhor",
        "tomei todas as doses da vacina, preciso de reforco?",
        "to morrendo de rir com o video de voces",
        "tava com vontade de sumir de tanto trabalho kkk",
        "queria me despedir da equipe, vou mudar de cidade",
        "nao tenho dor no peito, mas meu pai infartou com 50 anos. que exames faco?",
        "meu filho teve convulsao febril com 2 anos, precisa acompanhar?",
        "meu pai teve avc ano passado, quero marcar retorno",
        "o provisorio caiu enquanto eu jantava, nao doi nada",
        "cai de bicicleta ontem, so ralei o cotovelo",
        "a bateria do meu celular acabou por isso nao respondi",
        "minha pressao ta 12 por 8, ta boa?",
    ],
)
def test_routine_mentions_stay_routine(text: str) -> None:
    result = assess(text)
    assert result.grade == "routine", (text, result.findings)
