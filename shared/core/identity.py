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

import email_validator
import phonenumbers
from email_validator import EmailNotValidError, validate_email
from validate_docbr import CPF

from shared.core.errors import ClinicqError
from shared.core.pii import mask_cpf

_CPF = CPF()
_DIGITS = re.compile(r"\D")
# "+55", a two-digit area code (never starting with 0) and an 8- or 9-digit
# subscriber number: no national or carrier prefix parse could strip.
_E164_BR = re.compile(r"\+55[1-9][0-9]{9,10}", re.ASCII)


class InvalidIdentifier(ClinicqError, ValueError):
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
    if _E164_BR.fullmatch(value):
        # Already E.164 and Brazilian (what WhatsApp, Twilio and most forms
        # send): phonenumbers.parse would only split off "+55" here, at ~30 µs
        # of text handling, the larger part of validating a webhook. Validity
        # is still phonenumbers' verdict, on the PhoneNumber parse would build
        # (tests/unit/test_identity.py holds both paths to the same answers).
        written = phonenumbers.PhoneNumber(country_code=55, national_number=int(value[3:]))
        return _validated(value, written)
    return _normalize_by_parsing(value, default_region)


def _normalize_by_parsing(value: str, default_region: str) -> str:
    try:
        parsed = phonenumbers.parse(value, default_region)
    except phonenumbers.NumberParseException:
        raise InvalidIdentifier("not a phone number") from None
    as_written = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
    return _validated(as_written, parsed)


def _validated(as_written: str, parsed: phonenumbers.PhoneNumber) -> str:
    e164 = canonical_br_mobile(as_written)
    if e164 != as_written:
        # Validate the canonical number without parsing its text again.
        parsed = phonenumbers.PhoneNumber(country_code=55, national_number=int(e164[3:]))
    if not phonenumbers.is_valid_number(parsed):
        raise InvalidIdentifier("not a valid phone number")
    return e164


# Meta's page-scoped (Messenger PSID) and Instagram-scoped (IGSID) ids: opaque
# decimal strings today (15-20 digits). Digits only, so nothing else can be
# stored or sent as one; 64 is room for Meta to lengthen them.
_META_SCOPED_ID = re.compile(r"[0-9]{1,64}", re.ASCII)


def normalize_meta_scoped_id(raw: str | int) -> str:
    """A PSID or IGSID as Meta writes it (the digits), or InvalidIdentifier."""
    value = str(raw).strip()
    if not _META_SCOPED_ID.fullmatch(value):
        raise InvalidIdentifier("not a Meta page- or Instagram-scoped id (digits)")
    return value


normalize_psid = normalize_meta_scoped_id
normalize_igsid = normalize_meta_scoped_id


# A Telegram user id (= its private chat id with the bot): a positive integer
# of at most 52 significant bits (Bot API), so at most 16 decimal digits.
_TELEGRAM_ID = re.compile(r"[1-9][0-9]{0,15}", re.ASCII)


def normalize_telegram_id(raw: str | int) -> str:
    """A Telegram private chat id in its canonical decimal form. Group and
    channel chats (negative ids) are not a patient's address."""
    value = str(raw).strip() if isinstance(raw, str | int) and not isinstance(raw, bool) else ""
    if not _TELEGRAM_ID.fullmatch(value) or int(value) >= 2**52:
        raise InvalidIdentifier("not a Telegram private chat id")
    return value


def whatsapp_wa_id(e164: str) -> str:
    """The digits WhatsApp uses as an address (no '+')."""
    return e164.lstrip("+")


# The shape nearly every patient's address has (ASCII dot-atom local part,
# letters-digits-hyphen labels, an alphabetic TLD), checked in a couple of
# microseconds. email-validator, a full RFC 5322/6531 parser, costs ~40 µs and
# is the larger part of validating a webhook, so it decides only what this
# does not match. The fast path is deliberately narrower than the library:
# tests/unit/test_identity.py holds every address it accepts to the library's own
# verdict and normalization (a differential, Hypothesis-generated test).
_PLAIN_EMAIL = re.compile(
    r"(?P<local>[a-z0-9_+-]+(?:\.[a-z0-9_+-]+)*)"
    r"@(?P<domain>(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+(?P<tld>[a-z]{2,63}))",
    re.ASCII,
)
_SPECIAL_USE_TLDS = frozenset(email_validator.SPECIAL_USE_DOMAIN_NAMES)


def _plain_email(value: str) -> str | None:
    """The normalized address if `value` has the plain shape, else None."""
    lowered = value.lower()
    match = _PLAIN_EMAIL.fullmatch(lowered)
    if (
        match is None
        or len(match["local"]) > 64
        or "--" in match["domain"]  # Punycode and its look-alikes: the library's call
        or match["tld"] in _SPECIAL_USE_TLDS
    ):
        return None
    return lowered


def normalize_email(raw: str) -> str:
    value = raw.strip()
    if len(value) > 254:
        raise InvalidIdentifier("email address too long")
    plain = _plain_email(value)
    if plain is not None:
        return plain
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
    "normalize_igsid",
    "normalize_meta_scoped_id",
    "normalize_phone",
    "normalize_psid",
    "whatsapp_wa_id",
]
