"""Regression guard for the rules on the labelled sets.

The general-clinics set (nine specialties, graded). Development data:
tests/data/triage_tune.jsonl + triage_heldout.jsonl + triage_heldout2.jsonl +
triage_heldout3.jsonl (the last three were each measured once as a held-out part, then studied and
tuned on); the goals — emergency recall 1.0, urgent recall >= 0.95, false
alarms <= 5 %, intent accuracy >= 0.90 — are asserted there. The held-out
part is triage_heldout4.jsonl, never looked at while tuning; its test asserts
the goals it meets and the measured figures as a floor for those it does not;
`python -m bench triage` prints it first with every miss.
The first (aesthetics) set keeps its goal: intent accuracy >= 0.90 and urgent
recall >= 0.95.
"""

from __future__ import annotations

from collections import Counter

import pytest

from bench.triage_accuracy import (
    DATA_DIR,
    HELDOUT,
    HELDOUT2,
    HELDOUT3,
    HELDOUT4,
    TUNE,
    evaluate,
    load_examples,
    model_without,
)
from shared.triage.discriminators import GRADES
from shared.triage.intent_model import TRAINING_FILES, default_model, load_labelled, train
from shared.triage.rules import INTENTS


def general_clinics() -> list:
    return [ex for path in (TUNE, HELDOUT, HELDOUT2, HELDOUT3) if path.exists()
            for ex in load_examples(path)]


def test_general_clinics_set_is_large_varied_and_well_formed() -> None:
    examples = general_clinics()
    assert len(examples) >= 400
    assert len({e.text for e in examples}) == len(examples)
    assert len({e.specialty for e in examples}) == 9
    assert {e.intent for e in examples} == set(INTENTS)
    grades = Counter(e.urgency for e in examples)
    assert set(grades) == set(GRADES) and min(grades.values()) >= 30


def test_rules_meet_the_goals_on_the_development_data() -> None:
    report = evaluate(general_clinics())
    misses = [(p.example.id, p.urgency, p.example.text) for p in report.errors
              if p.missed or p.false_alarm]
    assert report.meets_goals() == [], misses


@pytest.mark.skipif(not HELDOUT2.exists(), reason="dev part not present")
def test_intent_model_beats_the_keyword_rules_on_messages_it_was_not_trained_on() -> None:
    # triage_heldout2 with the model trained on every other file: 0.939, the
    # keyword rules alone 0.904.
    report = evaluate(load_examples(HELDOUT2), model_without(HELDOUT2))
    assert report.accuracy >= 0.90
    assert report.accuracy > report.keyword_accuracy


@pytest.mark.skipif(not HELDOUT4.exists(), reason="held-out part not present")
def test_rules_on_the_held_out_part() -> None:
    # Measured once, after tuning ended, never tuned on and never trained on:
    # urgent recall 0.906, emergency recall 0.852, false alarms 0.028, intent
    # accuracy 0.931 (keyword rules alone 0.886). The false-alarm and intent
    # goals are met and asserted; the recall figures are floors against
    # regression, short of the goals (1.0 and 0.95). (triage_heldout3, the
    # held-out part before it, measured 0.900 / 0.907 / 0.050 / 0.931 and is
    # dev data since.)
    assert HELDOUT4.name not in TRAINING_FILES
    report = evaluate(load_examples(HELDOUT4))
    assert report.false_alarm_rate <= 0.05
    assert report.accuracy >= 0.90
    assert report.urgent_recall >= 0.90
    assert report.emergency_recall is not None and report.emergency_recall >= 0.85


def test_intent_model_is_trained_from_the_repository_data() -> None:
    paths = [DATA_DIR / name for name in TRAINING_FILES]
    assert all(path.exists() for path in paths)
    texts, intents = load_labelled(paths)
    assert len(texts) == sum(len(load_examples(path)) for path in paths)
    assert set(intents) == set(INTENTS)
    shipped = default_model()
    assert shipped is not None
    # Deterministic: retraining from the same files gives the same answers.
    again = train(paths)
    sample = texts[::25]
    assert [shipped.predict(t) for t in sample] == [again.predict(t) for t in sample]
    # It learned the files, not a constant.
    right = sum(shipped.predict(t) == i for t, i in zip(sample, intents[::25], strict=True))
    assert right >= 0.9 * len(sample)


def test_labelled_set_is_large_varied_and_well_formed() -> None:
    examples = load_examples()
    assert len(examples) >= 150
    assert len({e.text for e in examples}) == len(examples)
    per_intent = Counter(e.intent for e in examples)
    assert set(per_intent) == set(INTENTS)
    assert min(per_intent.values()) >= 15
    assert sum(e.urgent for e in examples) >= 25


def test_rules_meet_the_goal_on_the_whole_set() -> None:
    report = evaluate(load_examples())
    assert report.accuracy >= 0.90, report.errors
    assert report.urgent_recall >= 0.95, report.errors


def test_rules_meet_the_goal_on_the_held_out_third() -> None:
    heldout = [e for e in load_examples() if e.split == "heldout"]
    report = evaluate(heldout)
    assert report.accuracy >= 0.90, report.errors
    assert report.urgent_recall >= 0.95, report.errors
