"""Normalization of the identifiers contacts are found by (shared/core/identity.py)."""

from __future__ import annotations

import pytest
from email_validator import EmailNotValidError, validate_email
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.core.identity import (
    InvalidIdentifier,
    _plain_email,
    normalize_cpf,
    normalize_email,
    normalize_phone,
)


@pytest.mark.parametrize(
    ("raw", "e164"),
    [
        ("+55 11 98888-7777", "+5511988887777"),  # mobile, written with the ninth digit
        ("(11) 98888-7777", "+5511988887777"),  # national form, default region BR
        ("5554999261407", "+5554999261407"),  # WhatsApp wa_id: no "+"
        ("555499261407", "+5554999261407"),  # wa_id without the ninth digit
        ("+55 54 9926-1407", "+5554999261407"),  # old 8-digit mobile form
        ("whatsapp:+5511988887777", "+5511988887777"),  # Twilio's WhatsApp address
        ("+55 11 3333-4444", "+551133334444"),  # landline: no digit added
        ("+1 212-555-0123", "+12125550123"),  # not Brazilian: kept as written
        ("+55 11 98888-7777 ext. 12", "+5511988887777"),  # extension dropped
    ],
)
def test_phone_normalized_to_canonical_e164(raw: str, e164: str) -> None:
    assert normalize_phone(raw) == e164


@pytest.mark.parametrize(
    "raw",
    [
        "12",  # too short to be anything
        "not a phone",
        "+55 11 1234",  # too short for Brazil
        "+55 00 98888-7777",  # no area code 00
        "+1" + "9" * 40,  # over the length bound
        "+55 11 8888-7777" + "7",  # 9 digits not starting with 9: no mobile, no landline
    ],
)
def test_invalid_phone_raises(raw: str) -> None:
    with pytest.raises(InvalidIdentifier):
        normalize_phone(raw)


def test_email_lowercased_and_checked() -> None:
    assert normalize_email("  Paciente@Email.COM ") == "paciente@email.com"
    for bad in ("nope", "a@", "@b.com", "a b@c.com", "a@localhost"):
        with pytest.raises(InvalidIdentifier):
            normalize_email(bad)


def test_cpf_check_digits() -> None:
    assert normalize_cpf("529.982.247-25") == "52998224725"
    with pytest.raises(InvalidIdentifier):
        normalize_cpf("123.456.789-00")  # the seed's own example fails its check digits


# --- the email fast path answers exactly as email-validator would -------------

_LOCAL_CHARS = "abcXYZ019._+-'!#%é"
_DOMAIN_CHARS = "abcXYZ019-._"
_TLDS = ["com", "br", "COM", "c", "co1", "123", "test", "local", "localhost", "onion",
         "arpa", "invalid", "xn--p1ai", "ab--cd", "museum", ""]


@st.composite
def _address_like(draw: st.DrawFn) -> str:
    local = draw(st.text(_LOCAL_CHARS, min_size=0, max_size=70))
    label = st.one_of(
        st.text(_DOMAIN_CHARS, min_size=0, max_size=66),
        st.sampled_from(["xn--abc", "xn--p1ai", "ab--cd", "a-b", "-a", "a-", "email"]),
    )
    labels = draw(st.lists(label, min_size=0, max_size=4))
    tld = draw(st.sampled_from(_TLDS))
    return local + "@" + ".".join([*labels, tld])


def _library_verdict(value: str) -> str | None:
    try:
        return validate_email(value, check_deliverability=False).normalized.lower()
    except EmailNotValidError:
        return None


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(_address_like(), st.emails()))
def test_email_fast_path_agrees_with_email_validator(value: str) -> None:
    fast = _plain_email(value)
    if fast is not None:
        assert _library_verdict(value) == fast


@pytest.mark.parametrize(
    "value",
    ["paciente@email.com", "Joao.Silva+clinica@Gmail.COM", "maria_souza-1990@hospital.org.br",
     "a@b.co", "x@sub.domain-with-hyphen.com.br"],
)
def test_email_fast_path_takes_the_common_shapes(value: str) -> None:
    # Not vacuous: everyday addresses never reach the slow parser.
    assert _plain_email(value) == _library_verdict(value) == value.lower()


@pytest.mark.parametrize(
    "value",
    ["a..b@c.com", ".a@c.com", "a.@c.com", "a@c", "a@c.123", "a@-c.com", "a@c-.com",
     "a@ab--cd.com", "a@c.test", "a@c.local", "a@x.localhost", "a" * 65 + "@c.com",
     "joão@email.com", "a'b@c.com", "a@c.c"],
)
def test_email_fast_path_leaves_the_unusual_to_the_library(value: str) -> None:
    assert _plain_email(value) is None
    # and the public function still answers as the library does
    expected = _library_verdict(value)
    if expected is None:
        with pytest.raises(InvalidIdentifier):
            normalize_email(value)
    else:
        assert normalize_email(value) == expected


# --- the E.164 fast path answers exactly as phonenumbers.parse would ------------


def _phone_by_parse(raw: str) -> str | None:
    """The answer of the general path (phonenumbers.parse) for the same text."""
    from shared.core.identity import _normalize_by_parsing

    try:
        return _normalize_by_parsing(raw, "BR")
    except InvalidIdentifier:
        return None


def _phone_verdict(raw: str) -> str | None:
    try:
        return normalize_phone(raw)
    except InvalidIdentifier:
        return None


@settings(max_examples=1500, deadline=None)
@given(
    st.one_of(
        # every area code and subscriber shape, valid or not
        st.from_regex(r"\+55[0-9]{8,13}", fullmatch=True),
        st.from_regex(r"\+55[1-9][1-9]9?[2-9][0-9]{7}", fullmatch=True),
        st.from_regex(r"\+550?[0-9]{2}9?[0-9]{8}", fullmatch=True),
    )
)
def test_phone_fast_path_agrees_with_phonenumbers_parse(raw: str) -> None:
    assert _phone_verdict(raw) == _phone_by_parse(raw)


def test_phone_fast_path_covers_valid_and_invalid_numbers() -> None:
    # Not vacuous: the generated shapes include both verdicts.
    assert _phone_verdict("+5511987654321") == _phone_by_parse("+5511987654321") == "+5511987654321"
    assert _phone_verdict("+551187654321") == "+5511987654321"  # 8-digit mobile gains its 9
    assert _phone_verdict("+5511187654321") is None is _phone_by_parse("+5511187654321")
