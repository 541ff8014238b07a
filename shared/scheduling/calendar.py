"""The appointment as a calendar file (.ics, RFC 5545/5546), built with the
`icalendar` library: attached to the appointment e-mails and offered by the
self-service page (/a/<token>/calendar.ics).

One event per appointment, updated in place by the patient's calendar:

- `UID` = `<appointment id>@<PUBLIC_BASE_URL host>`: stable for the life of
  the appointment, so a reschedule replaces the event instead of adding one;
- `SEQUENCE` = the appointment's version (bumped by every change the patient
  must hear about: time, place, professional, cancellation), so a calendar
  applies the newest update and ignores a late older one;
- `DTSTART`/`DTEND` in the appointment's zone (`TZID`, the clinic's
  CLINIC_TIMEZONE unless the booking said otherwise) with its VTIMEZONE;
- `METHOD:REQUEST` for a live appointment, `METHOD:CANCEL` + `STATUS:CANCELLED`
  for a cancelled one (same UID, higher SEQUENCE).

Which e-mails carry it is declared here (`CALENDAR_TEMPLATES`): the
scheduler flags the message (`metadata.calendar = request|cancel`) and the
send step attaches the file (`calendar_attachments`, registered in
shared.outbound.delivery.ATTACHMENT_PATHS).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from email.utils import parseaddr
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from icalendar import Calendar, Event, vCalAddress, vText
from sqlalchemy.orm import Session

from shared.core.config import Settings
from shared.core.enums import AppointmentStatus
from shared.core.models import Appointment, Message
from shared.providers.base import Attachment

REQUEST, CANCEL = "request", "cancel"

# E-mail templates that carry the appointment's calendar file, and how:
# the booking confirmation (sent again, re-armed, after a reschedule) invites,
# the cancellation notice cancels.
CALENDAR_TEMPLATES: dict[str, str] = {
    "confirmacao_agendamento": REQUEST,
    "cancelamento": CANCEL,
}
ICS_FILENAME = "invite.ics"


def calendar_flag(channel: str, template: str) -> dict[str, str]:
    """What the scheduler adds to a message's metadata: `{"calendar": …}`
    for an e-mail that carries the file, else nothing."""
    method = CALENDAR_TEMPLATES.get(template) if channel == "email" else None
    return {"calendar": method} if method else {}


def method_for(appt: Appointment) -> str:
    return CANCEL if appt.status == AppointmentStatus.CANCELLED.value else REQUEST


def event_uid(appt: Appointment, settings: Settings) -> str:
    host = urlsplit(settings.PUBLIC_BASE_URL).hostname or "clinicq"
    return f"{appt.id}@{host}"


def _zone(appt: Appointment, settings: Settings) -> ZoneInfo:
    try:
        return ZoneInfo(appt.timezone)
    except (KeyError, ValueError):
        return settings.timezone


def appointment_calendar(
    appt: Appointment,
    settings: Settings,
    method: str,
    attendee: str | None = None,
    now: datetime | None = None,
) -> bytes:
    """The .ics bytes (CRLF lines, folded at 75 octets by icalendar)."""
    if method not in (REQUEST, CANCEL):
        raise ValueError(f"method must be {REQUEST!r} or {CANCEL!r}")
    tz = _zone(appt, settings)
    start = appt.starts_at.astimezone(tz)
    cal = Calendar()
    cal.add("prodid", f"-//clinicq//{settings.CLINIC_NAME}//PT-BR")
    cal.add("version", "2.0")
    cal.add("calscale", "GREGORIAN")
    cal.add("method", method.upper())

    event = Event()
    event.add("uid", event_uid(appt, settings))
    event.add("sequence", appt.version)
    event.add("dtstamp", (now or datetime.now(UTC)).astimezone(UTC))
    event.add("dtstart", start)
    event.add("dtend", start + timedelta(minutes=appt.duration_minutes))
    summary = f"Consulta - {settings.CLINIC_NAME}"
    if appt.professional:
        summary = f"Consulta com {appt.professional} - {settings.CLINIC_NAME}"
    event.add("summary", summary)
    where = ", ".join(p for p in (appt.location, appt.address) if p)
    if where:
        event.add("location", where)
    organizer = vCalAddress(f"mailto:{parseaddr(settings.SMTP_FROM)[1] or 'no-reply@localhost'}")
    organizer.params["cn"] = vText(settings.CLINIC_NAME)
    event.add("organizer", organizer)
    if attendee:
        # The recipient, so mail clients offer the invitation's buttons.
        person = vCalAddress(f"mailto:{attendee}")
        person.params["role"] = vText("REQ-PARTICIPANT")
        event.add("attendee", person)
    event.add("status", "CANCELLED" if method == CANCEL else "CONFIRMED")
    event.add("transp", "OPAQUE")
    cal.add_component(event)
    cal.add_missing_timezones()  # the VTIMEZONE the TZID names
    return bytes(cal.to_ical())


def calendar_attachments(
    session: Session, message: Message, settings: Settings
) -> list[Attachment]:
    """Send-time hook (shared.outbound.delivery.ATTACHMENT_PATHS): the .ics
    for an e-mail flagged `metadata.calendar`, built from the appointment as
    it is now (a stale version is skipped by the pre-send check anyway)."""
    meta = message.metadata_ or {}
    method = meta.get("calendar")
    appointment_id = meta.get("appointment_id")
    if message.channel != "email" or method not in (REQUEST, CANCEL) or not appointment_id:
        return []
    appt = session.get(Appointment, uuid.UUID(str(appointment_id)))
    if appt is None:
        return []
    data = appointment_calendar(appt, settings, method, attendee=message.to_address)
    return [
        Attachment(
            filename=ICS_FILENAME,
            content_type="text/calendar",
            data=data.decode("utf-8"),
            params={"method": method.upper()},
        )
    ]
