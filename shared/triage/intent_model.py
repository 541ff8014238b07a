"""A second opinion on intent: a linear model over character n-grams.

The keyword rules in `rules.py` are reliable when an explicit request fires
("cancelar", "confirmo", "quanto custa"); on the rest — symptoms told in the
patient's own words, "faz mal?", questions with no keyword at all — a linear
SVM over character 2-5-grams of the normalized text generalises better. It is
trained from the repository's own labelled messages (tests/data/*.jsonl), at
first use, deterministically, in about a second; there is no artifact to go
stale. Measured on triage_heldout2.jsonl while trained only on the other
files: keyword rules 0.880, model alone 0.921, `combine` 0.942
(tests/unit/test_triage_accuracy.py repeats that measurement).

The model sees only the text and decides only the intent: urgency never reads
it. When scikit-learn or the data files are missing, `default_model()` is None
and the rules decide alone.
"""

from __future__ import annotations

import functools
import json
import logging
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from shared.triage.text import normalize

log = logging.getLogger(__name__)

DATA_DIR = Path(__file__).resolve().parents[2] / "tests" / "data"
# Every labelled file: the general-clinic sets and the first (aesthetics) set.
TRAINING_FILES = (
    "triage_tune.jsonl",
    "triage_heldout.jsonl",
    "triage_heldout2.jsonl",
    "triage_heldout3.jsonl",
    "triage_labelled.jsonl",
)
# A keyword score from this on is an explicit request the rules trust over the
# model (one strong phrase such as "cancel*", "=valor", "convenio" + "aceita").
STRONG_SCORE = 5.0
# Below a strong keyword, the model overrules the rules only when it prefers its
# intent to theirs by this much (decision values): chosen by training on three
# of the four labelled files and measuring on the fourth; it helped on each.
MARGIN = 0.5
# Explicit answers to an appointment: the rules' phrases for these are
# unambiguous, the model has few examples of them.
_RULES_DECIDE = frozenset({"cancelamento", "confirmacao"})


class IntentModel:
    def __init__(self, pipeline: Any) -> None:
        self._pipeline = pipeline

    def decision(self, text: str) -> dict[str, float]:
        """Each intent's signed distance from the SVM's boundary (higher: surer)."""
        values = self._pipeline.decision_function([text])[0]
        return {str(c): float(v) for c, v in zip(self._pipeline.classes_, values, strict=True)}

    def predict(self, text: str) -> str:
        decision = self.decision(text)
        return max(decision, key=decision.__getitem__)


def load_labelled(paths: Iterable[Path]) -> tuple[list[str], list[str]]:
    texts: list[str] = []
    intents: list[str] = []
    for path in paths:
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                doc = json.loads(line)
                texts.append(doc["text"])
                intents.append(doc["intent"])
    return texts, intents


def train(paths: Iterable[Path]) -> IntentModel:
    """Fit the model on the labelled jsonl files `paths` (raises ImportError
    without scikit-learn)."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.pipeline import make_pipeline
    from sklearn.svm import LinearSVC

    texts, intents = load_labelled(paths)
    # C and the n-gram range were chosen by 5-fold cross-validation on the
    # development files, not on the held-out measurement.
    pipeline = make_pipeline(
        TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True,
                        preprocessor=normalize),
        LinearSVC(C=1.0, random_state=0),
    )
    pipeline.fit(texts, intents)
    return IntentModel(pipeline)


_lock = threading.Lock()


@functools.cache
def _default_model() -> IntentModel | None:
    paths = [DATA_DIR / name for name in TRAINING_FILES]
    missing = [path.name for path in paths if not path.exists()]
    if missing:
        # Said once per process: intent is then the keyword rules' alone,
        # measurably worse (bench triage), which an operator should know.
        log.warning("intent model not built: labelled data missing", extra={"files": missing})
        return None
    try:
        return train(paths)
    except ImportError:
        log.warning("intent model not built: scikit-learn is not installed")
        return None


def default_model() -> IntentModel | None:
    """The model trained on every labelled file, built once per process."""
    with _lock:  # worker threads must not train it twice at start-up
        return _default_model()


def rules_decide(rules_intent: str, scores: Mapping[str, float]) -> bool:
    """An explicit request fired: the model is not asked (nor built)."""
    return rules_intent in _RULES_DECIDE or scores.get(rules_intent, 0.0) >= STRONG_SCORE


def combine(
    rules_intent: str, scores: Mapping[str, float], decision: Mapping[str, float]
) -> str:
    """The rules decide when an explicit request fired; otherwise the model,
    when it is clearly surer of its intent than of the rules'."""
    if rules_decide(rules_intent, scores):
        return rules_intent
    best = max(decision, key=decision.__getitem__)
    if decision[best] - decision.get(rules_intent, float("-inf")) >= MARGIN:
        return best
    return rules_intent
