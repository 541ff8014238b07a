"""Triage of a patient's message: intent, urgency, sentiment, lead score.

    result = triage("to com febre depois da lipo", history=["qto custa a lipo?"])
    result.intent, result.urgency, result.discriminator   # stored in messages.triage

Urgency is graded: emergency, very_urgent, urgent, routine (`urgent` is
`urgency != "routine"`), with the discriminator that decided it (the
Manchester-grounded table in `discriminators.py`, applied by `urgency.py`).

Rules always run (`rules.py`). When `ENABLE_AI_ANALYSIS=true` and
`AI_API_BASE_URL` is set, an OpenAI-compatible model is asked too (`ai.py`);
its intent and sentiment are used when it answers validly in time. The rules
are the floor of urgency: the model may raise the grade (an alarm the rules
missed, or a higher grade), never lower it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from shared.core.config import Settings, get_settings
from shared.triage.ai import AiUnavailable, ai_enabled, ask_model
from shared.triage.discriminators import GRADE_LABELS_PT, GRADES, MODEL, REASON_LABELS_PT
from shared.triage.rules import INTENTS, lead_score, triage_rules

__all__ = ["INTENTS", "GRADES", "TriageResult", "triage", "CLINICAL_INTENTS", "reason_label",
           "grade_label"]

# Intents a clinician should see (alerts to EMAIL_MEDICO).
CLINICAL_INTENTS = frozenset({"informacao_procedimento"})


@dataclass
class TriageResult:
    intent: str
    urgent: bool
    sentiment: str
    lead_score: str  # hot | warm | cold
    lead_points: int
    source: str  # rules | rules+ai
    urgency: str = "routine"  # emergency | very_urgent | urgent | routine
    discriminator: str | None = None  # the sign that decided the grade
    urgency_reasons: list[str] = field(default_factory=list)  # every sign that fired
    rules_intent: str | None = None
    ai_error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


def triage(
    text: str,
    history: Sequence[str] | None = None,
    settings: Settings | None = None,
    history_intents: Sequence[str] | None = None,
) -> TriageResult:
    """Classify `text`; `history` is the conversation's earlier patient texts
    (oldest first), used for engagement in the lead score and as context for
    the model. `history_intents`, when known (from stored triage), saves
    re-classifying them."""
    settings = settings or get_settings()
    history = list(history or [])
    rules = triage_rules(text)
    intent, sentiment = rules.intent, rules.sentiment
    grade, discriminator = rules.urgency, rules.discriminator
    source, ai_error = "rules", None
    reasons = list(rules.urgency_reasons)

    if ai_enabled(settings):
        try:
            verdict = ask_model(text, history, settings)
        except AiUnavailable as exc:
            ai_error = exc.reason
        else:
            source = "rules+ai"
            intent, sentiment = verdict.intent, verdict.sentiment
            model_grade = verdict.urgency or ("urgent" if verdict.urgent else "routine")
            if GRADES.index(model_grade) > GRADES.index(grade):
                if grade == "routine":
                    discriminator = MODEL
                grade = model_grade
                reasons.append(MODEL)

    earlier = list(history_intents) if history_intents is not None else [
        triage_rules(t).intent for t in history
    ]
    score, points = lead_score(intent, sentiment, earlier)
    return TriageResult(
        intent=intent,
        urgent=grade != "routine",
        sentiment=sentiment,
        lead_score=score,
        lead_points=points,
        source=source,
        urgency=grade,
        discriminator=discriminator,
        urgency_reasons=reasons,
        rules_intent=rules.intent if rules.intent != intent else None,
        ai_error=ai_error,
    )


def grade_label(grade: str) -> str:
    """The grade as the team reads it ("EMERGÊNCIA", "MUITO URGENTE", ...)."""
    return GRADE_LABELS_PT.get(grade, grade)


def reason_label(reason: str | None) -> str:
    """A discriminator id as the team reads it ("déficit neurológico agudo ...")."""
    if not reason:
        return ""
    return REASON_LABELS_PT.get(reason, reason)
