"""Regression guard: the rules meet the goal on the whole labelled set.

Goal (issue 5): intent accuracy >= 0.90 and urgent recall >= 0.95. The
held-out third is reported separately by `python -m bench triage`.
"""

from __future__ import annotations

from collections import Counter

from bench.triage_accuracy import evaluate, load_examples
from shared.triage.rules import INTENTS


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
