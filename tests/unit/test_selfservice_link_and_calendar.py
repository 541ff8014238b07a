"""The self-service link's token (shared/core/tokens.py) and the calendar file
(shared/scheduling/calendar.py), pure: no database."""

from __future__ import annotations

import email
import email.policy
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from icalendar import Calendar

from shared.core.models import Appointment
from shared.core.tokens import (
    APPOINTMENT_LINK_TOKEN_CHARS,
    appointment_in_link_token,
    appointment_link_token,
    appointment_link_url,
    check_appointment_link_token,
    check_page_form_token,
    page_form_token,
)
from shared.providers.base import Attachment, OutgoingMessage
from shared.providers.email.smtp import SmtpProvider
from shared.scheduling.calendar import (
    CANCEL,
    REQUEST,
    appointment_calendar,
    calendar_flag,
    method_for,
)

KEY = "k" * 16 + "selfservice-unit-key-0123456789"
SP = ZoneInfo("America/Sao_Paulo")


# --- tokens ------------------------------------------------------------------------------


def test_token_names_the_appointment_and_checks_against_its_nonce() -> None:
    aid, nonce = uuid.uuid4(), "a" * 32
    token = appointment_link_token(KEY, aid, nonce)
    assert len(token) == APPOINTMENT_LINK_TOKEN_CHARS == 38
    assert token.replace("-", "").replace("_", "").isalnum()  # URL-safe, no padding
    assert appointment_in_link_token(token) == aid
    assert check_appointment_link_token(KEY, token, aid, nonce)
    assert appointment_link_url("https://c.test/", token) == f"https://c.test/a/{token}"


def test_forged_tokens_fail() -> None:
    aid, nonce = uuid.uuid4(), "b" * 32
    token = appointment_link_token(KEY, aid, nonce)
    # Another key, another appointment's MAC, a flipped character in the MAC.
    assert not check_appointment_link_token("x" * 40, token, aid, nonce)
    other = appointment_link_token(KEY, uuid.uuid4(), nonce)
    spliced = token[:22] + other[22:]
    assert appointment_in_link_token(spliced) == aid
    assert not check_appointment_link_token(KEY, spliced, aid, nonce)
    flipped = token[:-1] + ("A" if token[-1] != "A" else "B")
    assert not check_appointment_link_token(KEY, flipped, aid, nonce)
    # Not tokens at all: wrong length, non-ASCII, not base64url.
    for junk in ("", token[:-1], token + "x", "é" * 38, "!" * 38, "\udcff" * 38):
        assert appointment_in_link_token(junk) is None
        assert not check_appointment_link_token(KEY, junk, aid, nonce)


def test_revoked_token_fails() -> None:
    """Revocation draws a new nonce: the old link no longer checks."""
    aid = uuid.uuid4()
    old = appointment_link_token(KEY, aid, "c" * 32)
    assert not check_appointment_link_token(KEY, old, aid, "d" * 32)
    assert check_appointment_link_token(KEY, appointment_link_token(KEY, aid, "d" * 32), aid, "d" * 32)


def test_form_tokens_are_bound_to_link_cookie_and_purpose() -> None:
    link = appointment_link_token(KEY, uuid.uuid4(), "e" * 32)
    good = page_form_token(KEY, link, "cookie-1", "confirm")
    assert check_page_form_token(KEY, link, "cookie-1", "confirm", good)
    assert not check_page_form_token(KEY, link, "cookie-2", "confirm", good)
    assert not check_page_form_token(KEY, link, "cookie-1", "cancel", good)
    other_link = appointment_link_token(KEY, uuid.uuid4(), "e" * 32)
    assert not check_page_form_token(KEY, other_link, "cookie-1", "confirm", good)
    assert not check_page_form_token(KEY, link, "cookie-1", "confirm", "é")


# --- calendar file -----------------------------------------------------------------------


def appointment(**changes: Any) -> Appointment:
    values: dict[str, Any] = {
        "id": uuid.UUID("8c1a4c1e-9b4e-4c55-9d52-2b7f0c1d2e3f"),
        "external_id": "agenda-1",
        "contact_id": uuid.uuid4(),
        "professional": "Dra. Ana Souza",
        "location": "Unidade Paulista",
        "address": "Av. Paulista, 1000 - São Paulo",
        "starts_at": datetime(2026, 12, 10, 14, 30, tzinfo=SP),
        "duration_minutes": 45,
        "timezone": "America/Sao_Paulo",
        "status": "scheduled",
        "version": 1,
        "link_nonce": "f" * 32,
    }
    values.update(changes)
    return Appointment(**values)


def parse(data: bytes) -> tuple[Calendar, Any]:
    cal = Calendar.from_ical(data)
    (event,) = cal.walk("VEVENT")
    return cal, event


def test_ics_fields(settings: Any) -> None:
    appt = appointment()
    data = appointment_calendar(appt, settings, REQUEST, attendee="maria@example.com")
    assert b"\r\n" in data and all(len(line) <= 75 for line in data.split(b"\r\n"))
    cal, event = parse(data)
    assert str(cal["METHOD"]) == "REQUEST"
    assert str(event["UID"]) == "8c1a4c1e-9b4e-4c55-9d52-2b7f0c1d2e3f@clinicq.test"
    assert int(event["SEQUENCE"]) == 1
    start = event.decoded("DTSTART")
    assert start == datetime(2026, 12, 10, 14, 30, tzinfo=SP)
    assert event["DTSTART"].params["TZID"] == "America/Sao_Paulo"
    assert event.decoded("DTEND") - start == timedelta(minutes=45)
    # The zone the TZID names travels with the file.
    assert [str(tz["TZID"]) for tz in cal.walk("VTIMEZONE")] == ["America/Sao_Paulo"]
    assert str(event["LOCATION"]) == "Unidade Paulista, Av. Paulista, 1000 - São Paulo"
    assert str(event["SUMMARY"]) == "Consulta com Dra. Ana Souza - Portal Clinic"
    assert str(event["ORGANIZER"]) == "mailto:no-reply@localhost"
    assert event["ORGANIZER"].params["CN"] == "Portal Clinic"
    assert str(event["ATTENDEE"]) == "mailto:maria@example.com"
    assert str(event["STATUS"]) == "CONFIRMED"
    assert event.decoded("DTSTAMP").tzinfo is not None


def test_ics_across_book_reschedule_cancel(settings: Any) -> None:
    """Same UID throughout; SEQUENCE follows the version; a cancel is METHOD:CANCEL."""
    booked = appointment()
    moved = appointment(starts_at=datetime(2026, 12, 11, 9, 0, tzinfo=SP), version=2)
    cancelled = appointment(starts_at=moved.starts_at, version=3, status="cancelled")
    files = [
        appointment_calendar(a, settings, method_for(a)) for a in (booked, moved, cancelled)
    ]
    parsed = [parse(f) for f in files]
    assert len({str(e["UID"]) for _, e in parsed}) == 1
    assert [int(e["SEQUENCE"]) for _, e in parsed] == [1, 2, 3]
    assert [str(c["METHOD"]) for c, _ in parsed] == ["REQUEST", "REQUEST", "CANCEL"]
    assert [str(e["STATUS"]) for _, e in parsed] == ["CONFIRMED", "CONFIRMED", "CANCELLED"]
    assert parsed[1][1].decoded("DTSTART") == datetime(2026, 12, 11, 9, 0, tzinfo=SP)
    assert parsed[2][1]["DTSTART"].params["TZID"] == "America/Sao_Paulo"
    assert "ATTENDEE" not in parsed[0][1]  # the page's file names nobody


def test_ics_in_the_appointments_own_zone(settings: Any) -> None:
    appt = appointment(timezone="America/Manaus")
    cal, event = parse(appointment_calendar(appt, settings, REQUEST))
    assert event["DTSTART"].params["TZID"] == "America/Manaus"
    assert event.decoded("DTSTART").astimezone(UTC) == appt.starts_at.astimezone(UTC)
    assert [str(tz["TZID"]) for tz in cal.walk("VTIMEZONE")] == ["America/Manaus"]


def test_which_emails_carry_the_file() -> None:
    assert calendar_flag("email", "confirmacao_agendamento") == {"calendar": REQUEST}
    assert calendar_flag("email", "cancelamento") == {"calendar": CANCEL}
    assert calendar_flag("sms", "confirmacao_agendamento") == {}
    assert calendar_flag("email", "lembrete_consulta") == {}
    with pytest.raises(ValueError):
        appointment_calendar(appointment(), None, "publish")  # type: ignore[arg-type]


def test_smtp_message_carries_the_invite(settings: Any) -> None:
    ics = appointment_calendar(appointment(), settings, REQUEST).decode()
    out = OutgoingMessage(
        message_id=str(uuid.uuid4()),
        channel="email",
        to="maria@example.com",
        text="Consulta agendada",
        subject="Consulta",
        html="<p>Consulta agendada</p>",
        attachments=[Attachment("invite.ics", "text/calendar", ics, {"method": "REQUEST"})],
    )
    raw = SmtpProvider(settings).build(out).as_bytes(policy=email.policy.SMTP)
    mail = email.message_from_bytes(raw, policy=email.policy.default)
    parts = [p for p in mail.walk() if p.get_content_type() == "text/calendar"]
    assert len(parts) == 1
    part = parts[0]
    assert part.get_filename() == "invite.ics"
    assert part.get_param("method") == "REQUEST"
    assert part.get_content_charset() == "utf-8"
    assert part.get_payload(decode=True) == ics.encode()  # CRLF kept byte for byte
    assert mail.get_body(("plain",)).get_content().strip() == "Consulta agendada"
