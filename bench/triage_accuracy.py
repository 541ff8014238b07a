"""Triage accuracy on the labelled pt-BR set (tests/data/triage_labelled.jsonl).

Prints per-intent precision/recall, overall intent accuracy and urgent
recall/precision for the rules, on three slices:
- dev: the two thirds the rules were developed against (lines whose index
  mod 3 is 0 or 1);
- held-out: the other third (index mod 3 == 2), never looked at while
  tuning — the honest figure;
- all: the regression guard (tests/test_triage_accuracy.py asserts the goal
  on it).

Run: `python -m bench triage` (or `python -m bench.triage_accuracy`).
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from shared.triage.rules import INTENTS, triage_rules

DATA = Path(__file__).resolve().parent.parent / "tests" / "data" / "triage_labelled.jsonl"


@dataclass
class Example:
    index: int
    text: str
    intent: str
    urgent: bool

    @property
    def split(self) -> str:
        return "heldout" if self.index % 3 == 2 else "dev"


def load_examples(path: Path = DATA) -> list[Example]:
    examples = []
    for index, line in enumerate(path.read_text(encoding="utf-8").splitlines()):
        if line.strip():
            doc = json.loads(line)
            examples.append(Example(index, doc["text"], doc["intent"], bool(doc["urgent"])))
    return examples


@dataclass
class Report:
    n: int
    accuracy: float
    urgent_recall: float
    urgent_precision: float
    per_intent: dict[str, tuple[float, float, int]]  # precision, recall, support
    errors: list[tuple[Example, str, bool]]


def evaluate(examples: list[Example]) -> Report:
    tp: Counter[str] = Counter()
    predicted: Counter[str] = Counter()
    support: Counter[str] = Counter()
    correct = urgent_tp = urgent_pred = urgent_true = 0
    errors = []
    for ex in examples:
        result = triage_rules(ex.text)
        support[ex.intent] += 1
        predicted[result.intent] += 1
        if result.intent == ex.intent:
            tp[ex.intent] += 1
            correct += 1
        urgent_true += ex.urgent
        urgent_pred += result.urgent
        urgent_tp += ex.urgent and result.urgent
        if result.intent != ex.intent or result.urgent != ex.urgent:
            errors.append((ex, result.intent, result.urgent))
    per_intent = {
        intent: (
            tp[intent] / predicted[intent] if predicted[intent] else 0.0,
            tp[intent] / support[intent] if support[intent] else 0.0,
            support[intent],
        )
        for intent in INTENTS
    }
    return Report(
        n=len(examples),
        accuracy=correct / len(examples) if examples else 0.0,
        urgent_recall=urgent_tp / urgent_true if urgent_true else 1.0,
        urgent_precision=urgent_tp / urgent_pred if urgent_pred else 1.0,
        per_intent=per_intent,
        errors=errors,
    )


def print_report(name: str, report: Report, show_errors: bool) -> None:
    print(f"\n--- {name}: {report.n} messages ---")
    print(f"{'intent':<26}{'precision':>10}{'recall':>10}{'support':>9}")
    for intent, (precision, recall, support) in report.per_intent.items():
        print(f"{intent:<26}{precision:>10.3f}{recall:>10.3f}{support:>9}")
    print(f"intent accuracy: {report.accuracy:.3f}")
    print(f"urgent recall: {report.urgent_recall:.3f}  urgent precision: {report.urgent_precision:.3f}")
    if show_errors:
        for ex, intent, urgent in report.errors:
            print(f"  [{ex.index}] want {ex.intent}/{ex.urgent} got {intent}/{urgent}: {ex.text}")


def main() -> None:
    show_errors = "--errors" in sys.argv
    examples = load_examples()
    dev = [e for e in examples if e.split == "dev"]
    heldout = [e for e in examples if e.split == "heldout"]
    print(f"labelled set: {DATA.name}, rules only (shared.triage.rules)")
    print_report("dev (rules developed on these)", evaluate(dev), show_errors)
    print_report("held-out (not used while tuning)", evaluate(heldout), False)
    print_report("all", evaluate(examples), False)
    print("\ngoal: intent accuracy >= 0.90 and urgent recall >= 0.95 (asserted on 'all')")


if __name__ == "__main__":
    main()
