"""Grade a patient's message by the discriminator table (discriminators.py).

    assess("minha mae ta com a boca torta e falando enrolado")
    -> Urgency(grade="emergency", discriminator="acute_neuro_deficit", ...)

Steps:
1. split the message into sentences (punctuation, line breaks) and normalise
   each (shared/triage/text.py); measured values become marker tokens
   ("febre de 39,5" adds `_temperatura_alta`, "pressao 19 por 11" adds
   `_pressao_muito_alta`, "bebe de 20 dias" adds `_bebe_pequeno`);
2. find which patient contexts the message is about (a baby, a child, a
   pregnancy, a recent procedure, an elderly person);
3. for every sign of every discriminator, find its phrases; a sign with
   `with_any` also needs one of those words near it (12 words either side);
4. modify each match's grade by the words around it in its sentence:
   negated ("nao tenho febre") or hypothetical ("o que faco se tiver febre")
   cancels it, and so does a relative's history ("meu pai infartou com 50
   anos") or a past event ("teve avc ano passado", not "desde semana
   passada"); resolved ("ja passou") lowers two steps; mild ("febre baixa",
   "doi um pouco") or an expected effect asked about ("e normal?") one step;
   an intensifier ("muito", "nao para", "desde ontem", "piorando") raises it
   one step, up to the discriminator's max_grade; self-harm never drops
   below very_urgent;
5. the message's grade is its highest match; its discriminator is that
   match's (the first in table order on a tie), every fired discriminator is
   kept as a reason.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from shared.triage import discriminators as table
from shared.triage.text import Pattern, compile_patterns, normalize

GRADE_RANK = {grade: rank for rank, grade in enumerate(table.GRADES)}
WITH_ANY_WINDOW = 20  # words either side of a sign where its `with_any` may be
INTENSIFIER_BEFORE = 5  # words before / after a sign where an intensifier counts
INTENSIFIER_AFTER = 10
MILD_BEFORE = 3  # "um pouco de febre"
MILD_AFTER = 4  # "febre baixa", "doi um pouco"
PAST_WINDOW = 4  # "caiu semana passada"
NEGATION_WINDOW = 4
HYPOTHETICAL_WINDOW = 4
RESOLVED_AFTER = 14  # "febre baixa que ja passou"; not a "ta normal" about another thing

# Sentence boundaries: . ! ? ; and line breaks, but not a decimal point ("38.5").
_SENTENCE_END = re.compile(r"(?<!\d)[.!?;\n]+|[.!?;\n]+(?!\d)|\s+-\s+")


@dataclass(frozen=True)
class _CompiledSign:
    discriminator: table.Discriminator
    sign: table.Sign
    patterns: tuple[Pattern, ...]
    with_any: tuple[Pattern, ...]
    with_all: tuple[tuple[Pattern, ...], ...]
    unless: tuple[Pattern, ...]


def _compile() -> tuple[_CompiledSign, ...]:
    compiled = []
    for disc in table.DISCRIMINATORS:
        for sign in disc.signs:
            compiled.append(
                _CompiledSign(disc, sign, compile_patterns(sign.phrases),
                              compile_patterns(sign.with_any),
                              tuple(compile_patterns(g) for g in sign.with_all),
                              compile_patterns(sign.unless))
            )
    return tuple(compiled)


_SIGNS = _compile()
_CONTEXTS = {name: compile_patterns(phrases) for name, phrases in table.CONTEXTS.items()}
_NEGATIONS = frozenset(table.NEGATIONS)
_NEGATION_EXCEPTIONS = frozenset(table.NEGATION_EXCEPTIONS)
_NEGATION_BREAKS = frozenset(b for b in table.NEGATION_BREAKS if " " not in b)
_ABILITY = frozenset(("consigo", "consegue", "conseguia", "conseguiu", "consegui"))
_HYPOTHETICAL = compile_patterns(table.HYPOTHETICAL)
_MILD = compile_patterns(table.MILD)
_RESOLVED = compile_patterns(table.RESOLVED)
_PAST = compile_patterns(table.PAST)
_SINCE = compile_patterns(("desde", "faz", "ha"))
_NOW = frozenset(("agora", "hoje", "novamente", "voltou", "mas", "ainda"))
_EXPECTED = compile_patterns(table.EXPECTED_QUESTION)
_INTENSIFIERS = compile_patterns(table.INTENSIFIERS)
_REPORT = compile_patterns(table.REPORT_MARKERS)
_DECLARED = compile_patterns(table.DECLARED_URGENCY)
_DECLARED_SERVICE = compile_patterns(table.DECLARED_SERVICE)
_DENIED = frozenset(("nada", "nao", "sem", "nenhuma", "nenhum"))


@dataclass
class Finding:
    discriminator: str
    grade: str
    base_grade: str
    phrase: str
    modifiers: list[str] = field(default_factory=list)


@dataclass
class Urgency:
    grade: str
    discriminator: str | None
    findings: list[Finding] = field(default_factory=list)
    contexts: list[str] = field(default_factory=list)
    lowered: list[str] = field(default_factory=list)  # signs a modifier silenced

    @property
    def urgent(self) -> bool:
        return self.grade != "routine"

    @property
    def reasons(self) -> list[str]:
        """Fired discriminators, highest grade first, each once."""
        seen: list[str] = []
        for f in sorted(self.findings, key=lambda f: -GRADE_RANK[f.grade]):
            if f.discriminator not in seen:
                seen.append(f.discriminator)
        return seen


# --- measured values ------------------------------------------------------------------

_FEVER_WORDS = ("febre", "temperatura", "graus", "termometro", "febril", "febrao", "quente",
                "quentinho", "quentinha", "esquentando",
                # "ta com 38,4, medi no sovaco": a temperature, though "febre" is not said
                "medi", "mediu", "medindo", "medimos", "sovaco", "axila", "axilar")
_PRESSURE_WORDS = ("pressao", "pa", "presao", "precao", "pressaum")
_PULSE_WORDS = ("pulso", "batimento", "batimentos", "bpm", "frequencia", "oximetro")
_GLUCOSE_WORDS = ("glicose", "glicemia", "hgt", "dextro", "acucar", "diabete", "diabetes",
                  "destro")
_BABY_WORDS = ("bebe", "nenem", "filho", "filha", "filhinho", "filhinha", "menino",
               "menina", "neto", "neta", "crianca", "recem", "nascido", "nascida")


_ELDER_WORDS = ("pai", "mae", "avo", "vo", "vovo", "tio", "tia", "sogro", "sogra", "senhor",
                "senhora", "idoso", "idosa", "marido", "esposa", "tenho")


_BABY_SUBJECTS = frozenset(_BABY_WORDS + ("ele", "ela", "so", "bebezinho", "bebezinha"))
# "ela tem 7 semanas": (up to this a baby under 3 months, up to this a baby)
_AGE_UNITS = {"dia": (90, 90), "dias": (90, 90), "semana": (12, 12), "semanas": (12, 12),
              "mes": (2, 24), "meses": (2, 24)}
_WEEKS_SHORT = frozenset(("sem", "sems", "sm", "smn"))
_PILL_WORDS = ("comprimidos", "remedios", "pilulas", "capsulas", "cartelas", "caixas",
               "frascos", "vidros", "doses", "gotas", "comprimido")


def _number(tok: str) -> int | None:
    return int(tok) if tok.isdigit() and len(tok) <= 3 else None


def _with_measures(toks: list[str]) -> list[str]:
    """The sentence with a marker token after each value read from its numbers."""
    out: list[str] = []
    words = set(toks)
    fever = any(w in words for w in _FEVER_WORDS)
    pressure = any(w in words for w in _PRESSURE_WORDS)
    glucose = any(w in words for w in _GLUCOSE_WORDS)
    baby = any(w in words for w in _BABY_WORDS)
    elder = any(w in words for w in _ELDER_WORDS)
    pulse = any(w in words for w in _PULSE_WORDS)
    # "gravida de 35 sem dor de cabeca": weeks, not "without"
    toks = ["semanas" if tok in _WEEKS_SHORT and i and 4 <= (_number(toks[i - 1]) or 0) <= 42
            else tok for i, tok in enumerate(toks)]
    for i, tok in enumerate(toks):
        out.append(tok)
        found: list[str] = []
        # "18x11", "180x110": pressure written as one token
        combined = re.fullmatch(r"(\d{2,3})x(\d{2,3})", tok)
        if combined and pressure:
            out.extend(_pressure(int(combined.group(1)), int(combined.group(2))))
            continue
        if glucose and tok in ("hi", "high"):  # the meter's "HI": above its range
            out.append("_glicemia_muito_alta")
            continue
        if re.fullmatch(r"(19[5-9]\d|20[0-4]\d)", tok):  # "infartou em 2019": a date
            out.append("_ano")
            continue
        value = _number(tok)
        if value is None:
            continue
        following = toks[i + 1] if i + 1 < len(toks) else ""
        if fever and 35 <= value <= 42:
            if value >= 39:
                found.append("_temperatura_alta")
            elif value == 38:
                found.append("_temperatura_febre")
            else:
                found.append("_temperatura_baixa")
        if pressure and following in ("por", "x") and i + 2 < len(toks):
            diastolic = _number(toks[i + 2])
            if diastolic is not None:
                found.extend(_pressure(value, diastolic))
        if glucose and 20 <= value <= 999 and following not in ("por", "x"):
            if value >= 300:
                found.append("_glicemia_muito_alta")
            elif value >= 250:
                found.append("_glicemia_alta")
            elif value <= 60:
                found.append("_glicemia_baixa")
        if baby and (following in ("dias", "dia") and value <= 90
                     or following in ("semanas", "semana") and value <= 12):
            found.append("_bebe_pequeno")
        # "ele tem 2 meses e meio": a baby, though the message never says "bebe"
        months_old = (following in _AGE_UNITS and value <= _AGE_UNITS[following][1]
                      and i >= 2 and toks[i - 1] in ("tem", "completou", "completa", "fez")
                      and toks[i - 2] in _BABY_SUBJECTS
                      and (toks[i + 2] if i + 2 < len(toks) else "") not in ("de", "que"))
        if months_old:
            found.append("_bebe_pequeno" if value <= _AGE_UNITS[following][0] else "_bebe_meses")
        elif baby and following in ("mes", "meses") and value <= 2:
            found.append("_bebe_pequeno")
        before = toks[i - 1] if i else ""
        pregnant_says = before in ("gravida", "gestante") or i == 0 or (
            before == "com" and i >= 2 and toks[i - 2] in ("estou", "esta", "ja"))
        if following in ("semanas", "semana") and 4 <= value <= 42 and (
            pregnant_says or not baby and before in ("com", "de", "estou")
        ):
            found.append("_gestacao")  # "to com 31 semanas", "gravida de 20 semanas"
        if value >= 3 and following in _PILL_WORDS:
            found.append("_muitos_comprimidos")  # "engoli uns 20 comprimidos"
        if pulse and 20 <= value <= 45 and following not in ("anos", "dias", "minutos"):
            found.append("_pulso_baixo")  # "pulso 42": bradycardia
        if following == "anos" and value >= 65 and elder:
            found.append("_idoso")
        out.extend(found)
    return out


def _pressure(systolic: int, diastolic: int) -> list[str]:
    if systolic < 35:  # "18 por 11" is cmHg as patients say it
        systolic, diastolic = systolic * 10, diastolic * 10
    if systolic >= 180 or diastolic >= 120:
        return ["_pressao_muito_alta"]
    if systolic >= 150 or diastolic >= 100:
        return ["_pressao_alta"]
    if 40 <= systolic <= 85:  # "8 por 5": shock
        return ["_pressao_muito_baixa"]
    return []


# --- sentences --------------------------------------------------------------------------


@dataclass
class _Sentence:
    toks: list[str]
    start: int  # index of its first token in the message's token list
    asked: bool  # ended with a question mark


def _sentences(text: str) -> list[_Sentence]:
    sentences: list[_Sentence] = []
    position = 0
    pieces = _SENTENCE_END.split(text or "")
    delimiters = _SENTENCE_END.findall(text or "")
    for index, piece in enumerate(pieces):
        toks = normalize(piece).split()
        if not toks:
            continue
        toks = _with_measures(toks)
        delimiter = delimiters[index] if index < len(delimiters) else ""
        sentences.append(_Sentence(toks, position, "?" in delimiter))
        position += len(toks)
    return sentences


# --- matching -----------------------------------------------------------------------------


def _any_in(patterns: Sequence[Pattern], toks: Sequence[str]) -> bool:
    return any(p.find(toks) >= 0 for p in patterns)


def _spans(patterns: Sequence[Pattern], toks: Sequence[str]) -> list[tuple[int, int]]:
    return [(start, start + len(p.words)) for p in patterns for start in p.find_all(toks)]


def _negated(toks: Sequence[str], start: int) -> bool:
    """A negator in the few words before the sign, in the same clause, that
    negates it: not an idiom ("sem sentido", "nem dipirona segura") and not a
    "nem" continuing an inability ("nao consigo abrir a boca nem engolir")."""
    first = max(0, start - NEGATION_WINDOW)
    window = list(toks[first:start])
    for index in range(len(window) - 1, -1, -1):  # "nao sei, mas estou com falta de ar"
        if window[index] in _NEGATION_BREAKS:
            first += index + 1
            window = window[index + 1:]
            break
    for offset, tok in enumerate(window):
        if tok in _NEGATIONS:
            following = window[offset + 1] if offset + 1 < len(window) else toks[start]
            if following in _NEGATION_EXCEPTIONS:
                continue
            if tok == "nem" and _ABILITY.intersection(toks[max(0, first + offset - 6):
                                                          first + offset]):
                continue
            return True
    return False


_DENIED_AFTER = frozenset(("nenhuma", "nenhum", "zero"))


def _denied_after(toks: Sequence[str], end: int) -> bool:
    """The sign denied after it is named: "febre nao teve nenhuma", "febre
    nenhuma"; not "febre nao baixa" (an intensifier)."""
    after = list(toks[end:end + 3])
    return bool(_DENIED_AFTER.intersection(after)) or after[:2] in (
        ["nao", "teve"], ["nao", "tem"], ["nao", "deu"], ["nao", "tive"])


def _context_negated(toks: Sequence[str], start: int) -> bool:
    return any(tok in _NEGATIONS for tok in toks[max(0, start - 2):start])


def _hypothetical(toks: Sequence[str], start: int) -> bool:
    for _begin, end in _spans(_HYPOTHETICAL, toks):
        if end <= start and start - end < HYPOTHETICAL_WINDOW:
            return True
    return False


def _near(patterns: Sequence[Pattern], toks: Sequence[str], low: int, high: int,
          taken: frozenset[int] | set[int] = frozenset()) -> str | None:
    """The first phrase of `patterns` within toks[low:high] that does not
    overlap the positions in `taken`."""
    for pattern in patterns:
        for begin in pattern.find_all(toks):
            stop = begin + len(pattern.words)
            if stop <= low or begin >= high:
                continue
            if taken.intersection(range(begin, stop)):
                continue
            return str(pattern)
    return None


def _resolved(toks: Sequence[str], start: int, end: int, sign_starts: set[int]) -> str | None:
    """A resolution phrase about this sign: just before it ("ja passou a
    febre"), or after it with no other sign in between ("febre baixa que ja
    passou"; but in "cortou o queixo, sangrou mas ja parou" it is the bleeding
    that stopped, not the cut)."""
    for pattern in _RESOLVED:
        for begin in pattern.find_all(toks):
            if begin + len(pattern.words) <= start and start - begin <= 4:
                return str(pattern)
            reach = RESOLVED_AFTER if str(pattern) not in _RESOLVED_NEAR else 4
            if (end <= begin <= end + reach
                    and not any(end <= s < begin for s in sign_starts)):
                return str(pattern)
    return None


def _mild(toks: Sequence[str], start: int, end: int) -> str | None:
    """An attenuation about this sign: after it, or before it in the same
    clause. In "inchou um pouco e esta latejando" / "abriu um pouquinho e
    saindo secrecao" the mildness is the first sign's; in "um pouco inchado e
    vermelho" (the sign right after the "e") it qualifies both."""
    for pattern in _MILD:
        for begin in pattern.find_all(toks):
            stop = begin + len(pattern.words)
            if stop <= start - MILD_BEFORE or begin >= end + MILD_AFTER:
                continue
            if stop <= start and _NEGATION_BREAKS.intersection(toks[stop:start - 1]):
                continue
            return str(pattern)
    return None


# Resolutions that may be about anything ("a boca ta normal"): only right after the sign.
_RESOLVED_NEAR = frozenset(("veio normal", "voltei normal", "esta normal", "esta otima",
                            "esta otimo", "controlado",
                            "controlada", "ficou bem", "comendo bem"))
_RECENT = frozenset(("ontem", "anteontem", "hoje", "agora", "madrugada", "cedo"))
_SEEN = frozenset(("dr", "dra", "doutor", "doutora", "medico", "medica", "muscular"))
_HAD = frozenset(("teve", "tive", "tiveram", "tinha"))
_KIN = frozenset(("pai", "mae", "avo", "vo", "tio", "tia", "irmao", "irma", "primo", "prima",
                  "familia", "familiar", "parente", "sogro", "sogra"))


def _family_history(toks: Sequence[str], start: int, end: int) -> bool:
    """A past event told as history, with the age it happened at: "meu pai
    infartou com 50 anos", "teve convulsao febril com 2 anos"."""
    if not (_KIN | _HAD).intersection(toks[max(0, start - 3):start]):
        return False
    after = toks[end:end + 4]
    return any(tok == "com" and i + 2 < len(after) and after[i + 1].isdigit()
               and after[i + 2] == "anos" for i, tok in enumerate(after))


def _now(toks: Sequence[str], low: int, high: int) -> bool:
    """A word saying the sign is happening now, in toks[low:high]; not "hoje"
    giving an age ("teve convulsao quando era nenem, hoje com 5 anos")."""
    for i in range(low, min(high, len(toks))):
        if toks[i] not in _NOW:
            continue
        if toks[i] == "hoje" and toks[i + 1:i + 2] in (["com"], ["tem"]) and \
                toks[i + 2:i + 3] and toks[i + 2].isdigit():
            continue
        return True
    return False


def _grade_match(disc: table.Discriminator, sign: table.Sign, sentence: _Sentence,
                 start: int, end: int, taken: set[int],
                 sign_starts: set[int]) -> tuple[str, list[str]] | None:
    """The match's grade after its sentence's modifiers; None when cancelled."""
    toks = sentence.toks
    floor = GRADE_RANK[disc.floor_grade]
    if sign.negatable and (_negated(toks, start) or _denied_after(toks, end)):
        return None
    if floor == 0 and (_hypothetical(toks, start) or _family_history(toks, start, end)):
        return None
    rank = GRADE_RANK[sign.grade]
    emergency = rank == GRADE_RANK["emergency"]
    ceiling = max(GRADE_RANK[disc.max_grade], rank)
    modifiers: list[str] = []
    delta = 0
    mild_or_past = False
    mild = past = None
    resolved = _resolved(toks, start, end, sign_starts - {start}) if disc.attenuable else None
    if disc.attenuable:
        # An emergency sign is not made mild by a word near it ("braco direito
        # fraco" is the sign); it is lowered one step when it has passed.
        mild = None if emergency or not sign.attenuable else _mild(toks, start, end)
        past = _near(_PAST, toks, start - PAST_WINDOW, end + PAST_WINDOW)
        if past and (_near(_SINCE, toks, start - PAST_WINDOW - 1, end + PAST_WINDOW)
                     or past != "_ano"  # "teve avc em 2021, hoje ta otima": a date stays past
                     and _now(toks, max(0, start - PAST_WINDOW), end + PAST_WINDOW)):
            # "febre desde semana passada" is still going on; in "tive avc ano
            # passado e agora a boca entortou" the sign is now
            past = None
        mild_or_past = bool(mild or past)
        if resolved and past != "_ano":  # "teve avc em 2021, ta otima" is history
            delta -= 1 if emergency else 2
            modifiers.append(f"resolvido: {resolved}")
        elif past:  # history, not the reason to write now
            delta -= 3
            modifiers.append(f"passado: {past}")
        elif mild:
            delta -= 1
            modifiers.append(f"leve: {mild}")
        expected = _near(_EXPECTED, toks, 0, len(toks))
        if expected and sign.attenuable and (sentence.asked or "normal" in expected):
            delta -= 1
            modifiers.append(f"pergunta: {expected}")
    intensifier = _near(_INTENSIFIERS, toks, start - INTENSIFIER_BEFORE,
                        end + INTENSIFIER_AFTER, taken)
    if intensifier and not resolved and not mild_or_past:
        delta += 1
        modifiers.append(f"intensidade: {intensifier}")
    new_rank = min(max(rank + delta, 0), ceiling)
    if (resolved and not past and rank >= GRADE_RANK["very_urgent"]
            and _RECENT.intersection(toks) and not _SEEN.intersection(toks)):
        # an alarming sign (a chest pain, a faint) yesterday that passed is
        # still seen today; a brief palpitation that passed is not
        new_rank = max(new_rank, GRADE_RANK[disc.resolved_floor])
    new_rank = max(new_rank, floor)
    return table.GRADES[new_rank], modifiers


def assess(text: str) -> Urgency:
    sentences = _sentences(text)
    all_toks = [t for s in sentences for t in s.toks]
    contexts = [
        name for name, patterns in _CONTEXTS.items()
        if any(not _context_negated(all_toks, begin) for begin, _ in _spans(patterns, all_toks))
    ]  # "nao estou gravida" is not a pregnancy; "nao sinto a bebe mexer" is one
    if "pregnancy" in contexts and "infant" in contexts:
        contexts.remove("infant")  # "o bebe parou de mexer" is the pregnancy's baby
    findings: list[Finding] = []
    lowered: list[str] = []
    spans = [[_spans(c.patterns, s.toks) for s in sentences] for c in _SIGNS]
    # Where a sign is named (a concept sign's anchor is a plain word such as
    # "barriga" or "lado": not a sign by itself).
    sign_starts = [
        {begin for c, per_sign in zip(_SIGNS, spans, strict=True) if not c.with_all
         for begin, _ in per_sign[i]}
        for i in range(len(sentences))
    ]
    for compiled, per_sentence in zip(_SIGNS, spans, strict=True):
        sign, disc = compiled.sign, compiled.discriminator
        if sign.context and sign.context not in contexts:
            continue
        for index, sentence in enumerate(sentences):
            toks = sentence.toks
            if not per_sentence[index]:
                continue
            if sign.needs_report and not _any_in(_REPORT, toks):
                continue
            if compiled.unless and _any_in(compiled.unless, toks):
                continue
            for begin, end in per_sentence[index]:
                taken = set(range(begin, end))
                if compiled.with_all:
                    concept = _concepts(compiled.with_all, toks, begin, end, sign.within)
                    if concept is None:
                        continue
                    taken |= concept
                if compiled.with_any:
                    partner = _partner(compiled.with_any, all_toks, sentence.start + begin,
                                       sentence.start + end)
                    if partner is None:
                        continue
                    p_begin, p_end = partner
                    taken |= {i - sentence.start for i in range(p_begin, p_end)}
                graded = _grade_match(disc, sign, sentence, begin, end, taken,
                                      sign_starts[index])
                phrase = " ".join(toks[begin:end])
                if graded is None or graded[0] == "routine":
                    lowered.append(disc.id)
                    continue
                findings.append(Finding(disc.id, graded[0], sign.grade, phrase, graded[1]))
    if not findings:
        return Urgency("routine", None, [], contexts, sorted(set(lowered)))
    order = {d.id: i for i, d in enumerate(table.DISCRIMINATORS)}
    best = max(findings, key=lambda f: (GRADE_RANK[f.grade], -order[f.discriminator]))
    return Urgency(best.grade, best.discriminator, findings, contexts, sorted(set(lowered)))


def _concepts(groups: Sequence[Sequence[Pattern]], toks: Sequence[str], start: int,
              end: int, within: int) -> set[int] | None:
    """Positions of one non-negated phrase of every group, each within `within`
    words of the sign in its sentence and not overlapping it; None when a group
    is missing."""
    taken: set[int] = set()
    for group in groups:
        found = None
        for pattern in group:
            for begin in pattern.find_all(toks):
                stop = begin + len(pattern.words)
                if stop <= start - within or begin >= end + within:
                    continue
                if begin < end and stop > start:
                    continue
                if taken.intersection(range(begin, stop)):
                    continue
                if _negated(toks, begin):
                    continue
                found = range(begin, stop)
                break
            if found:
                break
        if found is None:
            return None
        taken |= set(found)
    return taken


def _partner(patterns: Sequence[Pattern], all_toks: Sequence[str], start: int,
             end: int) -> tuple[int, int] | None:
    """A `with_any` phrase near the sign (message-wide positions), not the sign itself."""
    low, high = start - WITH_ANY_WINDOW, end + WITH_ANY_WINDOW
    for pattern in patterns:
        for begin in pattern.find_all(all_toks):
            stop = begin + len(pattern.words)
            if stop <= low or begin >= high:
                continue
            if begin < end and stop > start:  # the sign's own words
                continue
            if _negated(all_toks, begin):  # "nao vomitou nada"
                continue
            return begin, stop
    return None


_ASKED_GRAVE = re.compile(r"grave\s*\?", re.IGNORECASE)


def declared_urgency(text: str) -> bool:
    """The patient says it is urgent ("URGENTE", "socorro") without naming a sign."""
    toks = normalize(text).split()
    for begin, _ in _spans(_DECLARED, toks):
        if _negated(toks, begin) or _DENIED.intersection(toks[max(0, begin - 2):begin]):
            continue  # "nao e nada urgente", "nada grave", "sem urgencia"
        if _near(_DECLARED_SERVICE, toks, begin - 3, begin):
            continue  # "voces atendem emergencia sabado?" asks about a service
        if (toks[begin] == "grave" and begin and toks[begin - 1] in ("e", "sera", "seria")
                and _ASKED_GRAVE.search(text)):
            continue  # "isso e grave?" asks whether a finding is serious
        return True
    return False
