"""Regression guard for the rules on the labelled sets.

The general-clinics set (tests/data/triage_tune.jsonl + triage_heldout.jsonl,
nine specialties, graded). The goals — emergency recall 1.0, urgent recall
>= 0.95, false alarms <= 5 %, intent accuracy >= 0.90 — are met on the tuning
part, which the rules were developed on. They are NOT met on the held-out
part (measured once, at the end, and not tuned on: urgent recall 0.824,
emergency recall 0.643, false alarms 0.033, intent accuracy 0.844), so the
held-out test holds those measured figures as a floor against regression,
not the goals; `python -m bench triage` prints both and every held-out miss.
The first (aesthetics) set keeps its goal: intent accuracy >= 0.90 and urgent
recall >= 0.95.
"""

from __future__ import annotations

from collections import Counter

import pytest

from bench.triage_accuracy import HELDOUT, TUNE, evaluate, load_examples
from shared.triage.discriminators import GRADES
from shared.triage.rules import INTENTS


def general_clinics() -> list:
    return [ex for path in (TUNE, HELDOUT) if path.exists() for ex in load_examples(path)]


def test_general_clinics_set_is_large_varied_and_well_formed() -> None:
    examples = general_clinics()
    assert len(examples) >= 400
    assert len({e.text for e in examples}) == len(examples)
    assert len({e.specialty for e in examples}) == 9
    assert {e.intent for e in examples} == set(INTENTS)
    grades = Counter(e.urgency for e in examples)
    assert set(grades) == set(GRADES) and min(grades.values()) >= 30


def test_rules_meet_the_goals_on_the_tuning_part() -> None:
    report = evaluate(load_examples(TUNE))
    misses = [(p.example.id, p.urgency, p.example.text) for p in report.errors]
    assert report.meets_goals() == [], misses


@pytest.mark.skipif(not HELDOUT.exists(), reason="held-out part not present")
def test_rules_do_not_regress_on_the_held_out_part() -> None:
    report = evaluate(load_examples(HELDOUT))
    assert report.false_alarm_rate <= 0.05  # the one goal met there
    assert report.urgent_recall >= 0.82
    assert report.emergency_recall is not None and report.emergency_recall >= 0.64
    assert report.accuracy >= 0.84


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
