"""The front desk's board: a day's appointments with the patient's answer, the
call list, and the desk's actions (confirmed by phone, resend a reminder now,
attended / no-show).

Answer state of an appointment, first match wins:
- its status when the visit is settled: confirmed, cancelled, attended
  (completed), no_show;
- `reschedule_requested` / `cancel_requested`: the patient asked (the request
  alert shared/inbound/replies.py files, template `pedido_paciente`, names
  the appointment in its metadata);
- `unreachable`: every reminder message it got failed (each channel tried);
- `no_answer` otherwise.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from shared.console.audit import audit
from shared.core.config import Settings
from shared.core.enums import AppointmentStatus
from shared.core.errors import FieldError, NotFoundError
from shared.core.models import Appointment, Contact, ScheduledMessage
from shared.inbound import patient_actions
from shared.outbound.create import OutboundRequest, create_outbound_message, enqueue_send

ANSWER_STATES = (
    "confirmed", "no_answer", "reschedule_requested", "cancel_requested", "unreachable",
    "cancelled", "attended", "no_show",
)
BOARD_LIMIT = 500

# One row per appointment of the window (ix_appointments_starts_at); the
# patient's name and phone and the two laterals are per-row index lookups
# (a join on contacts would let the planner hash the whole table).
BOARD_SQL = text("""
SELECT a.id, a.starts_at, a.professional, a.location, a.status, a.notes,
       a.contact_id,
       (SELECT c.name FROM contacts c WHERE c.id = a.contact_id) AS name,
       (SELECT ci.value FROM contact_identities ci
         WHERE ci.contact_id = a.contact_id AND ci.kind = 'phone'
         ORDER BY ci.verified_at IS NULL, ci.id DESC LIMIT 1) AS phone,
       req.pedido,
       rem.sent_count, rem.failed_count
  FROM appointments a
  LEFT JOIN LATERAL (
       SELECT m.template_data->>'pedido' AS pedido FROM messages m
        WHERE m.metadata ? 'appointment_id'
          AND (m.metadata->>'appointment_id') = a.id::text
          AND m.template = 'pedido_paciente'
        ORDER BY m.created_at DESC LIMIT 1) req ON true
  LEFT JOIN LATERAL (
       SELECT count(m.id) AS sent_count,
              count(m.id) FILTER (WHERE m.status = 'failed') AS failed_count
         FROM scheduled_messages s JOIN messages m ON m.id = s.message_id
        WHERE s.appointment_id = a.id) rem ON true
 WHERE a.starts_at >= :start AND a.starts_at < :end
   AND (CAST(:professional AS text) IS NULL OR a.professional = :professional)
   AND (CAST(:location AS text) IS NULL OR a.location = :location)
 ORDER BY a.starts_at, a.id
 LIMIT :limit
""")

# Distinct professionals/locations of the window, for the filter menus.
FACETS_SQL = text("""
SELECT DISTINCT a.professional, a.location FROM appointments a
 WHERE a.starts_at >= :start AND a.starts_at < :end
""")


@dataclass
class BoardRow:
    id: uuid.UUID
    starts_at: datetime
    professional: str | None
    location: str | None
    status: str
    notes: str | None
    contact_id: uuid.UUID
    name: str | None
    phone: str | None
    answer: str


def answer_state(status: str, pedido: str | None, sent: int, failed: int) -> str:
    settled = {
        AppointmentStatus.CONFIRMED.value: "confirmed",
        AppointmentStatus.CANCELLED.value: "cancelled",
        AppointmentStatus.COMPLETED.value: "attended",
        AppointmentStatus.NO_SHOW.value: "no_show",
    }
    if status in settled:
        return settled[status]
    if pedido == "reschedule":
        return "reschedule_requested"
    if pedido == "cancel_request":
        return "cancel_requested"
    if sent and failed == sent:
        return "unreachable"
    return "no_answer"


def day_window(day: datetime, settings: Settings) -> tuple[datetime, datetime]:
    """[local midnight, next local midnight) of `day`'s date in the clinic's zone."""
    local = day.astimezone(settings.timezone)
    start = local.replace(hour=0, minute=0, second=0, microsecond=0)
    return start.astimezone(UTC), (start + timedelta(days=1)).astimezone(UTC)


def board(
    session: Session,
    start: datetime,
    end: datetime,
    professional: str | None = None,
    location: str | None = None,
) -> list[BoardRow]:
    rows = session.execute(
        BOARD_SQL,
        {"start": start, "end": end, "professional": professional or None,
         "location": location or None, "limit": BOARD_LIMIT},
    ).all()
    return [
        BoardRow(
            r.id, r.starts_at, r.professional, r.location, r.status, r.notes, r.contact_id,
            r.name, r.phone, answer_state(r.status, r.pedido, r.sent_count or 0,
                                          r.failed_count or 0),
        )
        for r in rows
    ]


def facets(session: Session, start: datetime, end: datetime) -> tuple[list[str], list[str]]:
    rows = session.execute(FACETS_SQL, {"start": start, "end": end}).all()
    return (sorted({r.professional for r in rows if r.professional}),
            sorted({r.location for r in rows if r.location}))


CALL_LIST_HOURS = 24
_TO_CALL = ("no_answer", "unreachable", "reschedule_requested")


def call_list(session: Session, now: datetime) -> list[BoardRow]:
    """The unconfirmed within the next 24 h, soonest first (whom to phone)."""
    return _to_call(board(session, now, now + timedelta(hours=CALL_LIST_HOURS)), now)


def _to_call(rows: list[BoardRow], now: datetime) -> list[BoardRow]:
    end = now + timedelta(hours=CALL_LIST_HOURS)
    return [row for row in rows if now <= row.starts_at < end and row.answer in _TO_CALL]


@dataclass
class BoardPage:
    rows: list[BoardRow]
    calls: list[BoardRow]
    professionals: list[str]
    locations: list[str]


def read_board(
    session: Session,
    start: datetime,
    end: datetime,
    now: datetime,
    professional: str | None = None,
    location: str | None = None,
) -> BoardPage:
    """A day's board, the call list and the filter menus, in as few reads as
    the request allows: unfiltered, and when the day and the next 24 h
    overlap (today), ONE read of both windows split here; the menus come
    from the day's own rows when they are all there."""
    call_end = now + timedelta(hours=CALL_LIST_HOURS)
    unfiltered = professional is None and location is None
    rows: list[BoardRow] | None = None
    calls: list[BoardRow] | None = None
    if unfiltered and start < call_end and now < end:
        both = board(session, min(start, now), max(end, call_end))
        if len(both) < BOARD_LIMIT:  # nothing cut off by the limit
            rows = [r for r in both if start <= r.starts_at < end]
            calls = _to_call(both, now)
    if rows is None or calls is None:
        rows = board(session, start, end, professional, location)
        calls = call_list(session, now)
    if unfiltered and len(rows) < BOARD_LIMIT:
        professionals = sorted({r.professional for r in rows if r.professional})
        locations = sorted({r.location for r in rows if r.location})
    else:
        professionals, locations = facets(session, start, end)
    return BoardPage(rows, calls, professionals, locations)


class BoardActionRefused(FieldError):
    status = 409


def _appointment_for_update(session: Session, appointment_id: uuid.UUID) -> Appointment:
    appt = session.get(Appointment, appointment_id, with_for_update=True)
    if appt is None:
        raise NotFoundError(str(appointment_id))
    return appt


def mark_confirmed_by_phone(
    session: Session, appointment_id: uuid.UUID, actor: str, now: datetime
) -> list[Callable[[], None]]:
    """The front desk phoned the patient, who confirmed: the same action as a
    confirming reply or a button tap (shared/inbound/patient_actions.py — the
    patient is answered, later reminders ask nothing, the booking system is
    told), by `via="console"`. Returns what to run after the commit (the
    answer's enqueue); [] when it was confirmed already."""
    appt = _appointment_for_update(session, appointment_id)
    if appt.status == AppointmentStatus.CONFIRMED.value:
        return []
    if appt.status != AppointmentStatus.SCHEDULED.value:
        raise BoardActionRefused(f"appointment is {appt.status}", field="appointment_id")
    result = patient_actions.confirm(session, appt.id, via="console", now=now)
    audit(session, actor, "appointment.confirm_by_phone", f"appointment:{appt.id}")
    return result.after_commit


def mark_attendance(
    session: Session, appointment_id: uuid.UUID, attended: bool, actor: str, now: datetime
) -> None:
    appt = _appointment_for_update(session, appointment_id)
    if appt.status == AppointmentStatus.CANCELLED.value:
        raise BoardActionRefused("appointment is cancelled", field="appointment_id")
    if appt.starts_at > now:
        raise BoardActionRefused("the appointment has not started yet", field="appointment_id")
    appt.status = (AppointmentStatus.COMPLETED if attended else AppointmentStatus.NO_SHOW).value
    appt.updated_at = now
    audit(session, actor, "appointment.attended" if attended else "appointment.no_show",
          f"appointment:{appt.id}")


def resend_reminder(
    session: Session, appointment_id: uuid.UUID, actor: str, settings: Settings, now: datetime
) -> Any:
    """Send the appointment's latest reminder again, now, through the normal
    send path (create the row, enqueue after commit; opt-outs, quiet channel
    rules and the WhatsApp window apply as for any send). Returns a callable
    to run after the commit (the enqueue), or raises if there is nothing to resend."""
    from shared.scheduling.planner import contact_addresses, template_data

    appt = _appointment_for_update(session, appointment_id)
    if appt.status not in (AppointmentStatus.SCHEDULED.value, AppointmentStatus.CONFIRMED.value):
        raise BoardActionRefused(f"appointment is {appt.status}", field="appointment_id")
    last = session.query(ScheduledMessage).filter(
        ScheduledMessage.appointment_id == appt.id
    ).order_by(ScheduledMessage.due_at.desc()).first()
    if last is None:
        raise BoardActionRefused("no reminder planned for this appointment",
                                 field="appointment_id")
    address = contact_addresses(session, [appt.contact_id])[appt.contact_id].get(last.channel)
    if address is None:
        raise BoardActionRefused(f"patient has no address for {last.channel}",
                                 field="appointment_id")
    contact = session.get(Contact, appt.contact_id)
    minute = now.strftime("%Y%m%d%H%M")
    created = create_outbound_message(
        session,
        OutboundRequest(
            channel=last.channel,
            to_address=address,
            contact_id=appt.contact_id,
            template=last.template,
            template_data=template_data(appt, contact, settings),
            purpose="reminder",
            # A double click within the minute sends once.
            idempotency_key=f"console:resend:{appt.id}:{minute}",
            metadata={"appointment_id": str(appt.id), "resent_by": actor[:64]},
        ),
    )
    audit(session, actor, "appointment.resend_reminder", f"appointment:{appt.id}",
          {"message_id": str(created.message_id), "status": created.status})
    if created.should_enqueue:
        message_id, channel = created.message_id, last.channel
        return lambda: enqueue_send(message_id, channel)
    return lambda: None
