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

ROOT = Path(__file__).resolve().parent.parent


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
