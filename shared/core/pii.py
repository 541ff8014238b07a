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


# Kept whole, because they are not personal data but their digit runs look
# like a phone number to `_PHONE` (and ops need them readable in logs):
# - ids (message and task UUIDs): two all-digit groups ("…-6341-4082-…");
# - ISO dates and timestamps ("2026-11-23 08:26:32.765500+00:00"), as
#   libraries log them (APScheduler's "next run at: …");
# - clock times with fractions of a second ("08:26:03.765500");
# - IPv4 addresses, with a port ("127.0.0.1:43943", a broker URL).
# Each is strict (real month/day/hour ranges, octets <= 255) so that a phone
# or CPF written with dots or dashes does not pass for one.
_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
_KEEP = re.compile(
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
    r"|(?<![\d.-])(?:19|20)\d\d-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12]\d|3[01])"
    r"(?:[T ](?:[01]\d|2[0-3]):[0-5]\d(?::[0-5]\d(?:[.,]\d{1,9})?)?"
    r"(?:Z|[+-](?:[01]\d|2[0-3]):?[0-5]\d)?)?(?![\d-])"
    r"|(?<![\d:.])(?:[01]\d|2[0-3]):[0-5]\d:[0-5]\d[.,]\d{1,9}(?:[+-](?:[01]\d|2[0-3]):[0-5]\d)?(?!\d)"
    r"|(?<![\d.])" + _OCTET + r"(?:\." + _OCTET + r"){3}(?::\d{1,5})?(?![\d.])"
)


def _redact_plain(text: str) -> str:
    text = _EMAIL.sub(lambda m: f"{m.group(1)}***@{m.group(2)}", text)
    text = _CPF.sub(_mask_cpf_match, text)
    return _PHONE.sub(lambda m: mask_phone(m.group(0)), text)


def redact(text: str) -> str:
    """Mask every email, CPF and phone number found in free text (ids,
    timestamps and IP addresses stay as they are: see `_KEEP`)."""
    if not _KEEP.search(text):
        return _redact_plain(text)
    out: list[str] = []
    last = 0
    for m in _KEEP.finditer(text):
        out.append(_redact_plain(text[last : m.start()]))
        out.append(m.group(0))
        last = m.end()
    out.append(_redact_plain(text[last:]))
    return "".join(out)
