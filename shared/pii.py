"""Masking of personal identifiers (CPF, phones, emails) for logs and display."""

from __future__ import annotations

import re

_EMAIL = re.compile(r"([A-Za-z0-9._%+-])[A-Za-z0-9._%+-]*@([A-Za-z0-9.-]+\.[A-Za-z]{2,})")
# A CPF, formatted or bare (11 digits), not part of a longer digit run.
_CPF = re.compile(r"(?<!\d)(\d{3})\.?(\d{3})\.?(\d{3})-?(\d{2})(?!\d)")
# Phone-like runs: optional +, then 8+ digits with common separators.
_PHONE = re.compile(r"(?<![\w])\+?\d[\d\s().-]{6,}\d(?!\w)")


def mask_email(value: str) -> str:
    local, _, domain = value.partition("@")
    if not domain:
        return "***"
    return f"{local[:1]}***@{domain}"


def mask_phone(value: str) -> str:
    digits = re.sub(r"\D", "", value)
    if len(digits) < 4:
        return "***"
    return f"***{digits[-4:]}"


def mask_cpf(digits: str) -> str:
    """'12345678909' -> '***.456.789-**' (the format ARCHITECTURE.md shows)."""
    d = re.sub(r"\D", "", digits)
    if len(d) != 11:
        return "***"
    return f"***.{d[3:6]}.{d[6:9]}-**"


def _mask_cpf_match(m: re.Match[str]) -> str:
    return f"***.{m.group(2)}.{m.group(3)}-**"


# Ids (message and task UUIDs) are not personal data, but two all-digit groups
# of a UUID ("…-6341-4082-…") look like a phone number; they are kept intact.
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


def _redact_plain(text: str) -> str:
    text = _EMAIL.sub(lambda m: f"{m.group(1)}***@{m.group(2)}", text)
    text = _CPF.sub(_mask_cpf_match, text)
    return _PHONE.sub(lambda m: mask_phone(m.group(0)), text)


def redact(text: str) -> str:
    """Mask every email, CPF and phone number found in free text."""
    if "-" not in text or not _UUID.search(text):
        return _redact_plain(text)
    out: list[str] = []
    last = 0
    for m in _UUID.finditer(text):
        out.append(_redact_plain(text[last : m.start()]))
        out.append(m.group(0))
        last = m.end()
    out.append(_redact_plain(text[last:]))
    return "".join(out)
