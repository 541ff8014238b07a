"""Text normalization and tolerant matching for Portuguese patient messages.

Patients write on WhatsApp: no accents, any case, letters stretched for
emphasis ("doooor", "urgenteee"), abbreviations ("vc", "qto", "pfv") and
typos ("febri", "sangrano", "inxada"). Everything the rules compare goes
through `normalize` first, and single words are compared with a small edit
distance (rapidfuzz's optimal-string-alignment distance, which counts a
swapped pair of letters as one typo) so the keyword lists can stay short and
readable instead of enumerating misspellings.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass

from rapidfuzz.distance import OSA
from unidecode import unidecode

_NON_WORD = re.compile(r"[^a-z0-9]+")
_STRETCHED = re.compile(r"([a-z])\1{2,}")  # 3+ repeats: "demaaais" -> "demais"
_DOUBLED_FINAL = re.compile(r"([a-z])\1$")  # "dorr", "confirmadoo" (pt words never end so)

# WhatsApp abbreviations -> the word the rules know. Only unambiguous ones.
ABBREVIATIONS: dict[str, str] = {
    "vc": "voce",
    "bb": "bebe",
    "bbzinho": "bebezinho",
    "bbzinha": "bebezinha",
    "vcs": "voces",
    "qto": "quanto",
    "qnto": "quanto",
    "qnt": "quanto",
    "qt": "quanto",
    "qnts": "quantos",
    "qtos": "quantos",
    "pfv": "por favor",
    "pf": "por favor",
    "pls": "por favor",
    "plmds": "pelo amor de deus",
    "q": "que",
    "oq": "o que",
    "tb": "tambem",
    "tbm": "tambem",
    "n": "nao",
    "nn": "nao",
    "hj": "hoje",
    "mto": "muito",
    "mt": "muito",
    "mta": "muita",
    "mtos": "muitos",
    "d": "de",
    "c": "com",
    "p": "para",
    "pra": "para",
    "pro": "para",
    "pd": "pode",
    "qro": "quero",
    "qria": "queria",
    "obg": "obrigado",
    "brigado": "obrigado",
    "brigada": "obrigada",
    "blz": "beleza",
    "vlr": "valor",
    "dr": "doutor",
    "dra": "doutora",
    "dotor": "doutor",
    "ss": "sim",
    "msm": "mesmo",
    "qnd": "quando",
    "dps": "depois",
    "qdo": "quando",
    "vo": "vou",
    "to": "estou",
    "tou": "estou",
    "ta": "esta",
    "tah": "esta",
    "tava": "estava",
    "eh": "e",
    "agr": "agora",
    "sab": "sabado",
    "abdomino": "abdominoplastia",
    "rino": "rinoplastia",
    "blefaro": "blefaroplastia",
    "mamo": "mamoplastia",
    "lipo": "lipoaspiracao",
}


def normalize(text: str) -> str:
    """Lower-case ASCII words separated by single spaces, abbreviations expanded."""
    ascii_text = unidecode(text or "").lower()
    words = []
    for raw in _NON_WORD.split(ascii_text):
        if not raw:
            continue
        word = _STRETCHED.sub(r"\1", raw)
        if len(word) > 3:
            word = _DOUBLED_FINAL.sub(r"\1", word)
        words.append(ABBREVIATIONS.get(word, word))
    return " ".join(words)


def tokens(text: str) -> list[str]:
    return normalize(text).split()


def _allowed_edits(length: int) -> int:
    if length < 5:
        return 0  # "dor", "sim", "pus": a single typo makes another word
    if length < 12:  # two typos in "descamando" make "desmaiando"
        return 1
    return 2


def _sounds(word: str) -> str:
    """Spellings that sound alike in Portuguese ("inxada" for "inchada")."""
    return word.replace("ch", "x").replace("ss", "s")


@functools.lru_cache(maxsize=65536)
def word_matches(token: str, keyword: str) -> bool:
    """`keyword` is a word, or a stem ending in '*' matching any word it starts.

    Both are compared as written and as they sound, each with a small typo
    allowance."""
    if _word_matches(token, keyword):
        return True
    token_sound, keyword_sound = _sounds(token), _sounds(keyword)
    if (token_sound, keyword_sound) == (token, keyword):
        return False
    return _word_matches(token_sound, keyword_sound)


# Everyday words one typo away from a sign's stem ("demais" ~ "desmai*"):
# written as they are, they are never that sign.
_COMMON_WORDS = frozenset(("demais", "fatura"))


def _word_matches(token: str, keyword: str) -> bool:
    if token in _COMMON_WORDS:
        return token == keyword.lstrip("=") or (
            keyword.endswith("*") and token.startswith(keyword[:-1]))
    if keyword.startswith("="):  # "=pilha": exact, no typo allowance ("filha")
        return token == keyword[1:]
    if keyword.endswith("*"):
        stem = keyword[:-1]
        if token.startswith(stem):
            return True
        # A typo in a short stem makes another word ("atend" vs "agend"):
        # stems forgive one only from six letters on.
        edits = 1 if len(stem) >= 6 else 0
        if not edits or len(token) < len(stem) - 1:
            return False
        # Compare the stem with the token's beginning of about the same length
        # ("sangrano" ~ "sangr*", "inxad" ~ "inchad*").
        for cut in (len(stem) - 1, len(stem), len(stem) + 1):
            if OSA.distance(token[:cut], stem, score_cutoff=edits) <= edits:
                return True
        return False
    if token == keyword:
        return True
    edits = _allowed_edits(len(keyword))
    return bool(edits) and OSA.distance(token, keyword, score_cutoff=edits) <= edits


@dataclass(frozen=True)
class Pattern:
    """A keyword phrase: words (or stems with '*'), matched as consecutive tokens."""

    words: tuple[str, ...]

    @classmethod
    def of(cls, phrase: str) -> Pattern:
        return cls(tuple(phrase.split()))

    def find(self, toks: Sequence[str]) -> int:
        """Index of the first match in `toks`, or -1."""
        n = len(self.words)
        first = self.words[0]
        for start in range(len(toks) - n + 1):
            if not word_matches(toks[start], first):
                continue
            if all(word_matches(toks[start + i], w) for i, w in enumerate(self.words[1:], 1)):
                return start
        return -1

    def find_all(self, toks: Sequence[str]) -> list[int]:
        """Indexes of every match in `toks`."""
        n = len(self.words)
        return [
            start
            for start in range(len(toks) - n + 1)
            if all(word_matches(toks[start + i], w) for i, w in enumerate(self.words))
        ]

    def __str__(self) -> str:
        return " ".join(w.lstrip("=") for w in self.words)


def compile_patterns(phrases: Sequence[str]) -> tuple[Pattern, ...]:
    return tuple(Pattern.of(normalize_phrase(p)) for p in phrases)


def normalize_phrase(phrase: str) -> str:
    """Normalize a keyword phrase but keep its '*' stem and '=' exact markers."""
    return " ".join(_normalize_keyword(w) for w in phrase.split())


def _normalize_keyword(word: str) -> str:
    if word.startswith("_"):  # a marker token the urgency rules add ("_temperatura_alta")
        return word
    if word.startswith("="):
        return "=" + normalize(word[1:])
    if word.endswith("*"):
        return normalize(word[:-1]) + "*"
    return normalize(word)
