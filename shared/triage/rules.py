"""Rule-based triage of Portuguese patient messages (always runs, no network).

Intent: every intent has weighted keyword phrases; the highest total wins, with
a few structural rules on top that keywords alone get wrong ("quanto tempo" is
not a price question; a bare "sim"/"1" answers a reminder). Rescheduling
("remarca", "nao vou conseguir ir, pode remarcar?") is `cancelamento`, as the
labelling rules define it (tests/data/TRIAGE_DATASET.md). Unless a strong
keyword fired, a character n-gram model trained on the labelled data decides
the intent (`intent_model.py`); it never touches urgency. Urgency is graded (emergency, very_urgent,
urgent, routine) by the Manchester-grounded discriminator table in
`discriminators.py`, with negation, attenuation, intensifiers and the
patient's context applied by `urgency.py`.

The keyword lists are deliberately short: `shared.triage.text` expands
abbreviations and forgives typos, so "febri", "sangrano" and "urgenti" match.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from shared.triage.discriminators import DECLARED
from shared.triage.intent_model import IntentModel, combine, default_model, rules_decide
from shared.triage.text import compile_patterns, tokens
from shared.triage.urgency import Finding, assess, declared_urgency

INTENTS = (
    "agendamento",
    "informacao_procedimento",
    "preco",
    "qualificacao",
    "confirmacao",
    "cancelamento",
    "outro",
)
SENTIMENTS = ("positivo", "neutro", "negativo")
LEAD_SCORES = ("hot", "warm", "cold")

# --- intent keywords -----------------------------------------------------------
# (phrase, weight). Stems end in '*'. Phrases are normalized like messages.
_INTENT_PHRASES: dict[str, list[tuple[str, float]]] = {
    "agendamento": [
        ("agend*", 3), ("marcar", 3), ("marca", 2), ("horario", 2), ("horarios", 2),
        ("vaga", 2), ("vagas", 2),
        ("disponib*", 2), ("disponivel", 2), ("encaixe", 3), ("agenda", 2),
        ("retorno", 2), ("quero operar", 2), ("marcar a cirurgia", 3),
        ("atendem no", 1), ("tem horario", 2), ("proximo horario", 3),
        ("consulta online", 2), ("sessao", 1), ("tirar os pontos", 1),
        ("consigo consulta", 4), ("consigo uma consulta", 4), ("queria consulta", 4),
        ("quero consulta", 4), ("queria uma consulta", 4), ("quero avaliacao", 4),
        ("quero uma avaliacao", 4), ("encaixar", 4), ("tem como ver", 3), ("atende hoje", 3),
        ("atendem hoje", 3), ("ser atendida", 3), ("ser atendido", 3), ("posso ir ai", 3),
        ("consulta pra", 2), ("consulta para", 2), ("marco consulta", 3),
        ("marcar consulta", 3), ("tem vaga", 3), ("=avaliacao", 1),
    ],
    "preco": [
        # Short price words are exact: "valor" ~ "calor", "custo" ~ "cisto",
        # "pagar" ~ "parar" are one typo apart.
        ("preco", 4), ("precos", 4), ("=valor", 4), ("=valores", 4), ("=custa", 4),
        ("=custo", 3), ("=vlr", 4), ("=precinho", 4),
        ("orcamento", 4), ("parcel*", 4), ("pagamento", 3), ("=pagar", 2),
        ("desconto", 4), ("financiamento", 4), ("financia*", 3), ("promocao", 4),
        ("pagamento a vista", 3), ("pagar a vista", 3), ("=cartao", 2), ("quanto fica", 4),
        ("quanto sai", 4),
        ("quanto e", 3), ("quanto esta", 4), ("e paga", 3), ("cobra*", 3),
    ],
    "informacao_procedimento": [
        ("quanto tempo", 3), ("quantos dias", 3), ("quantas semanas", 3), ("dura", 2),
        ("repouso", 3), ("recuperacao", 3), ("pos operatorio", 2), ("cicatriz", 2),
        ("anestesia", 3), ("cinta", 2), ("dreno", 2), ("resultado", 2),
        ("diferenca", 3), ("e normal", 3), ("posso", 1), ("pode", 1), ("precisa", 1),
        ("preciso parar", 2), ("idade minima", 3), ("na mesma cirurgia", 3),
        ("depois da", 1), ("depois do", 1), ("antes da", 1), ("trocada", 2),
        ("e verdade", 2), ("artificial", 2), ("como e feit*", 3), ("exame*", 1),
        ("voltar a", 1), ("dirigir", 1), ("academia", 1), ("tomar sol", 2),
        ("amamentacao", 2), ("beber", 1), ("drenagem", 1), ("como funciona", 3),
        ("tratamento", 2), ("=remedio", 1), ("sintoma*", 2), ("e comum", 3),
        ("tem problema", 3), ("me preocupar", 3), ("preocupar", 2), ("e perigoso", 3),
        ("quantas sessoes", 3), ("ajuda", 1), ("resolve", 1), ("funciona", 1),
        ("pode ser", 2), ("sera que", 1), ("o que fazer", 3), ("o que faco", 3),
        ("devo", 2), ("espero", 1), ("tomo", 2), ("tomar", 1), ("orientacao", 3),
        # "is it bad / is it normal / is it X?" about a product, a sign, a reading
        ("faz mal", 4), ("=normal", 2), ("ta bom", 2), ("e alergia", 3),
    ],
    "qualificacao": [
        ("interesse", 4), ("interessad*", 4), ("interece", 4), ("vontade", 3),
        ("pensando em", 3), ("estou pensando", 3), ("candidat*", 4),
        ("sera que", 2), ("vale a pena", 4), ("por onde", 2), ("duvida entre", 4),
        ("queria muito", 3), ("indicam", 3), ("indica", 2), ("tenho medo", 3),
        ("ainda da para", 3), ("qual cirurgia", 3), ("resolveria", 3), ("tem solucao", 3),
        ("pesquisando", 3), ("me informando", 3), ("fazer tambem", 3),
        ("fica natural", 3), ("gostaria de melhorar", 3),
        ("melhorar", 2), ("autoestima", 3), ("mudanca", 2), ("nunca fiz", 3),
        ("juntando dinheiro", 3), ("ideal", 2), ("queria fazer", 2), ("quero fazer", 2),
        ("consigo fazer", 3),
        # the clinic's credentials and the patient's insurance
        ("aceitam", 4), ("aceita", 3), ("convenio", 4), ("=plano", 3), ("pelo plano", 4),
        ("especialista", 3), ("especializacao", 4), ("=crm", 5), ("=rqe", 5), ("=cro", 5),
        ("titulo", 3), ("formacao", 4), ("experiencia", 3), ("=sus", 3), ("particular", 3),
        ("membro", 3), ("=unimed", 5), ("=amil", 5), ("bradesco", 4), ("sulamerica", 5),
        ("hapvida", 5), ("odontoprev", 5), ("porto seguro", 5), ("=cassi", 5),
        ("=ipasgo", 5), ("=geap", 5), ("a clinica tem", 4), ("o dr e", 3), ("a dra e", 3),
        ("a dra faz", 3), ("o dr faz", 3), ("trabalha com", 3), ("atende crianca", 3),
        ("tem medico", 3), ("tem dermatologista", 4), ("tem cardiologista", 4),
        ("medico ou", 3), ("fala ingles", 3),
    ],
    "confirmacao": [
        ("confirm*", 5), ("estarei", 4), ("estarei presente", 5), ("vou sim", 5),
        ("pode contar comigo", 5), ("combinado", 4), ("podem contar", 4),
    ],
    "cancelamento": [
        ("cancel*", 5), ("desmarc*", 5), ("desisti*", 5), ("nao vou poder", 4),
        ("nao poderei", 4), ("nao vou conseguir", 4), ("nao vou mais", 4),
        ("tirar meu nome", 4), ("nao quero mais", 5), ("nao vou poder ir", 5),
        ("nao vou conseguir ir", 5), ("nao vou poder comparecer", 5), ("=adiar", 5),
        ("=adia", 4), ("reagend*", 5), ("remarc*", 5),
    ],
    "outro": [
        ("endereco", 3), ("localizacao", 3), ("estacionamento", 3), ("convenio", 3),
        ("recibo", 4), ("comprovante", 4), ("nota fiscal", 4), ("atestado", 4),
        ("obrigad*", 2), ("atendente", 2), ("instagram", 1), ("atrasar", 3),
        ("esqueci", 3), ("feriado", 2), ("wifi", 3), ("contato", 3), ("aonde", 2),
        ("bairro", 2), ("nao tenho interesse", 8),
        ("receita", 5), ("relatorio", 5), ("segue", 4), ("em anexo", 5), ("=anexo", 4),
        ("mandar", 2), ("mandando", 3), ("laudo", 4), ("=fotos", 2), ("renovar", 3),
        ("horario de funcionamento", 8), ("funcionamento", 6), ("que horas", 3),
        ("=fecham", 6), ("=abrem", 6), ("amei o resultado", 5), ("=email", 1),
        ("reembolso", 3), ("segunda via", 4), ("=pericia", 3), ("declaracao", 5),
        ("pedido do exame", 5), ("pedido de exame", 5), ("pedido dos exames", 5),
        ("resultado do exame", 3), ("=comparecimento", 5), ("que horario voces atendem", 6),
        ("que horario o", 3), ("que horario a", 3), ("horario de atendimento", 5),
    ],
}
_INTENT_PATTERNS = {
    intent: [(p, w) for p, w in zip(compile_patterns([ph for ph, _ in phrases]),
                                    [w for _, w in phrases], strict=True)]
    for intent, phrases in _INTENT_PHRASES.items()
}

# A whole message that is only an acknowledgement answers a reminder.
_CONFIRM_ONLY = {
    "sim", "1", "ok", "okay", "confirmo", "confirmado", "confirmada", "s", "yes",
    "sim confirmo", "confirmo sim", "ok confirmado", "confirmadissimo", "beleza confirmado",
    "sim vou", "vou sim", "certo", "pode ser",
}
_CANCEL_ONLY = {"2", "nao", "cancelar", "cancela", "cancelado"}
# The options of the WhatsApp auto-acknowledgement menu (whatsapp/menu_opcoes.txt).
_MENU_ANSWERS = {
    "agendar": "agendamento",
    "valores": "preco",
    "procedimentos": "informacao_procedimento",
    "atendente": "outro",
}

# --- urgency --------------------------------------------------------------------
# Graded by the discriminator table (shared/triage/discriminators.py, applied by
# shared/triage/urgency.py). A patient who only declares an urgency
# ("URGENTE", "socorro") with no sign is `urgent`, unless the message is plainly
# administrative ("preciso remarcar com urgencia").
_ADMINISTRATIVE = frozenset({"agendamento", "preco", "cancelamento", "confirmacao"})

# --- sentiment --------------------------------------------------------------------
_POSITIVE = compile_patterns([
    "obrigad*", "amei", "adorei", "otimo", "otima", "excelente", "maravilh*", "perfeito",
    "atencios*", "deu tudo certo", "feliz", "top", "parabens", "gostei",
])
_NEGATIVE = compile_patterns([
    "pessim*", "horrivel", "absurdo", "demora*", "ninguem responde", "insatisfeit*",
    "reclama*", "medo", "triste", "preocupad*", "ruim", "decepcion*", "infelizmente",
    "passando mal", "socorro", "nao passa", "piorando",
])


@dataclass
class RulesResult:
    intent: str
    urgent: bool  # urgency != "routine"
    sentiment: str
    urgency: str = "routine"  # emergency | very_urgent | urgent | routine
    discriminator: str | None = None  # the sign that decided the grade
    urgency_reasons: list[str] = field(default_factory=list)  # every sign that fired
    scores: dict[str, float] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)
    keyword_intent: str = "outro"  # the intent of the keyword rules alone, without the model


def classify_intent(toks: Sequence[str]) -> tuple[str, dict[str, float]]:
    joined = " ".join(toks)
    if joined in _CONFIRM_ONLY:
        return "confirmacao", {"confirmacao": 10.0}
    if joined in _CANCEL_ONLY:
        return "cancelamento", {"cancelamento": 10.0}
    if joined in _MENU_ANSWERS:
        return _MENU_ANSWERS[joined], {_MENU_ANSWERS[joined]: 10.0}

    scores: dict[str, float] = {}
    for intent, patterns in _INTENT_PATTERNS.items():
        total = 0.0
        for pattern, weight in patterns:
            if pattern.find(toks) >= 0:
                total += weight
        if total:
            scores[intent] = total

    # "quanto" asks a price unless it asks a duration or a count.
    for i, tok in enumerate(toks):
        if tok == "quanto":
            following = toks[i + 1] if i + 1 < len(toks) else ""
            if following not in ("tempo", "dura", "demora"):
                scores["preco"] = scores.get("preco", 0) + 3
    if not scores:
        return "outro", scores
    # Asked next to anything else, an explicit cancellation or confirmation
    # decides: the patient's appointment changes whatever else they ask.
    for intent in ("cancelamento", "confirmacao"):
        if scores.get(intent, 0) >= 5:
            return intent, scores
    order = {name: rank for rank, name in enumerate(INTENTS)}
    best = max(scores.items(), key=lambda kv: (kv[1], -order[kv[0]]))
    return best[0], scores


def detect_sentiment(toks: Sequence[str], urgent: bool) -> str:
    pos = sum(1 for p in _POSITIVE if p.find(toks) >= 0)
    neg = sum(1 for p in _NEGATIVE if p.find(toks) >= 0) + (1 if urgent else 0)
    if neg > pos:
        return "negativo"
    if pos > neg:
        return "positivo"
    return "neutro"


def triage_rules(
    text: str, intent_model: IntentModel | None = None, use_model: bool = True
) -> RulesResult:
    """`intent_model` defaults to the one trained on the repository's labelled
    data; `use_model=False` gives the keyword rules alone."""
    toks = tokens(text)
    keyword_intent, scores = classify_intent(toks)
    graded = assess(text)
    grade, discriminator, reasons = graded.grade, graded.discriminator, graded.reasons
    # The keyword intent, not the model's, so the model never changes a grade.
    if grade == "routine" and keyword_intent not in _ADMINISTRATIVE and declared_urgency(text):
        grade, discriminator, reasons = "urgent", DECLARED, [DECLARED]
    urgent = grade != "routine"

    def clinical(intent: str) -> str:
        # A reported sign, or a health complaint the modifiers made routine,
        # with no request of its own is a clinical question.
        if discriminator != DECLARED and (
            (urgent and intent in ("outro", "qualificacao"))
            or (intent == "outro" and graded.lowered and "outro" not in scores)
        ):
            return "informacao_procedimento"
        return intent

    intent = keyword_intent
    # No words (empty, emoji only) give the model nothing; an explicit
    # request is the rules' to decide.
    asks_model = use_model and bool(toks) and not rules_decide(keyword_intent, scores)
    model = (intent_model or default_model()) if asks_model else None
    if model is not None:
        intent = combine(keyword_intent, scores, model.decision(text))
    intent, keyword_intent = clinical(intent), clinical(keyword_intent)
    return RulesResult(
        intent=intent,
        urgent=urgent,
        sentiment=detect_sentiment(toks, urgent),
        urgency=grade,
        discriminator=discriminator,
        urgency_reasons=reasons,
        scores=scores,
        findings=graded.findings,
        keyword_intent=keyword_intent,
    )


# --- lead score (second seed, sprint 6) -------------------------------------------
_INTENT_POINTS = {
    "agendamento": 40,
    "preco": 30,
    "qualificacao": 25,
    "informacao_procedimento": 15,
    "confirmacao": 10,
    "cancelamento": -25,
    "outro": 0,
}
HOT_AT = 50
WARM_AT = 25


def lead_score(intent: str, sentiment: str, history_intents: Sequence[str]) -> tuple[str, int]:
    """hot / warm / cold from what the patient asks now and how engaged they are.

    Intent carries most of the weight (someone asking to book is hot, a price
    question warm); engagement adds: every earlier message in the
    conversation, and each *different* buying question asked (price, then
    procedure details, then a slot is a typical path to a booking).
    """
    points = _INTENT_POINTS.get(intent, 0)
    earlier = list(history_intents)
    points += min(len(earlier), 4) * 5
    buying = {"agendamento", "preco", "qualificacao", "informacao_procedimento"}
    distinct = {i for i in [*earlier, intent] if i in buying}
    points += max(len(distinct) - 1, 0) * 10
    if "cancelamento" in earlier[-2:]:
        points -= 15
    points += {"positivo": 5, "negativo": -5}.get(sentiment, 0)
    score = "hot" if points >= HOT_AT else "warm" if points >= WARM_AT else "cold"
    return score, points
