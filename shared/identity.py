"""Normalization of the identifiers a contact is found by.

- Phones: E.164 via `phonenumbers` (default region BR). Brazilian mobiles are
  canonicalized *with* the ninth digit: WhatsApp `wa_id`s often arrive without
  it (`555499261407` is the mobile `+55 54 99926-1407`), and one canonical form
  makes "same patient on WhatsApp and SMS" a plain equality lookup.
- Emails: syntax checked by `email-validator` (no DNS), lower-cased.
- CPF: check digits by `validate-docbr`; stored as a keyed hash + masked form.
"""

from __future__ import annotations

import hashlib
import hmac
import re

import phonenumbers
from email_validator import EmailNotValidError, validate_email
from validate_docbr import CPF

from shared.pii import mask_cpf

_CPF = CPF()
_DIGITS = re.compile(r"\D")


class InvalidIdentifier(ValueError):
    """The value cannot be normalized; the message says why (no PII in it)."""


def canonical_br_mobile(e164: str) -> str:
    """Add the ninth digit to an 8-digit Brazilian mobile subscriber number.

    Since 2016 every Brazilian mobile has 9 digits starting with 9; numbers
    written in the old 8-digit form start with 6-9. Landlines (2-5) are kept.
    """
    if e164.startswith("+55") and len(e164) == 13:  # +55 AA NNNNNNNN
        area, subscriber = e164[3:5], e164[5:]
        if subscriber[0] in "6789":
            return f"+55{area}9{subscriber}"
    return e164


def normalize_phone(raw: str, default_region: str = "BR") -> str:
    """Return the canonical E.164 form or raise InvalidIdentifier."""
    value = raw.strip()
    if value.startswith("whatsapp:"):
        value = value[len("whatsapp:") :]
    if len(value) > 32:
        raise InvalidIdentifier("phone number too long")
    digits = _DIGITS.sub("", value)
    # A bare international number (WhatsApp wa_id "5511…") has no "+".
    if not value.startswith("+") and digits.startswith("55") and len(digits) in (12, 13):
        value = "+" + digits
    try:
        parsed = phonenumbers.parse(value, default_region)
    except phonenumbers.NumberParseException:
        raise InvalidIdentifier("not a phone number") from None
    e164 = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
    e164 = canonical_br_mobile(e164)
    if not phonenumbers.is_valid_number(phonenumbers.parse(e164)):
        raise InvalidIdentifier("not a valid phone number")
    return e164


def whatsapp_wa_id(e164: str) -> str:
    """The digits WhatsApp uses as an address (no '+')."""
    return e164.lstrip("+")


def normalize_email(raw: str) -> str:
    value = raw.strip()
    if len(value) > 254:
        raise InvalidIdentifier("email address too long")
    try:
        info = validate_email(value, check_deliverability=False)
    except EmailNotValidError:
        raise InvalidIdentifier("not a valid email address") from None
    return info.normalized.lower()


def normalize_cpf(raw: str) -> str:
    """Return the 11 CPF digits or raise InvalidIdentifier (check digits)."""
    digits = _DIGITS.sub("", raw)
    if len(digits) != 11 or not _CPF.validate(digits):
        raise InvalidIdentifier("CPF check digits do not match")
    return digits


def hash_cpf(digits: str, secret_key: str) -> str:
    """Keyed hash: a CPF has only ~10^9 values, a plain hash is reversible."""
    return hmac.new(secret_key.encode(), digits.encode(), hashlib.sha256).hexdigest()


__all__ = [
    "InvalidIdentifier",
    "canonical_br_mobile",
    "hash_cpf",
    "mask_cpf",
    "normalize_cpf",
    "normalize_email",
    "normalize_phone",
    "whatsapp_wa_id",
]
