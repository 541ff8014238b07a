"""What the patient's self-service page does (ingest/pages/selfservice.py):
confirm, ask to reschedule, cancel — one function per action.

These use the same code paths as a reply (shared/inbound/replies.py): a
confirmation sets the appointment `confirmed` without a version bump (the
reminders stay valid); a reschedule or cancellation request e-mails the team
(EMAIL_SUPORTE, template `pedido_paciente`); a direct cancellation is
shared/scheduling/appointments.py `cancel_appointment` (pending messages
cancelled, cancellation notices added). MERGE NOTE: when
shared/inbound/patient_actions.py (the one home of patient actions) lands,
each function here becomes a call to its counterpart there.

Who may act: whoever holds the link. It was sent only to the patient's own
addresses (vouched for by the booking system), so holding it is proof of
receiving a message there — the same trust as a verified reply.

The caller owns the transaction; sends are returned as `after_commit`
callables (a task must not be published before its row is committed).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.orm import Session

from shared.core.config import Settings
from shared.core.enums import AppointmentStatus
from shared.core.models import Appointment, Contact
from shared.outbound.create import OutboundRequest, create_outbound_message, enqueue_send
from shared.scheduling.appointments import cancel_appointment
from shared.scheduling.planner import template_data

log = logging.getLogger(__name__)

CONFIRMED, RESCHEDULE_REQUESTED, CANCEL_REQUESTED, CANCELLED = (
    "confirmed",
    "reschedule_requested",
    "cancel_requested",
    "cancelled",
)
PREFERRED_WINDOW_MAX = 200  # characters of the optional "when suits you" text
_CHANNEL_LABEL = "página de autoatendimento"


@dataclass
class PageActionResult:
    outcome: str
    after_commit: list[Callable[[], None]] = field(default_factory=list)


def confirm_from_page(
    session: Session, appt: Appointment, now: datetime | None = None
) -> PageActionResult:
    """Confirmed, as a SIM reply does (idempotent)."""
    if appt.status == AppointmentStatus.SCHEDULED.value:
        # Not a version bump: the reminders stay valid for a confirmed visit.
        appt.status = AppointmentStatus.CONFIRMED.value
        appt.updated_at = now or datetime.now(UTC)
    log.info(
        "appointment confirmed on the self-service page", extra={"appointment_id": str(appt.id)}
    )
    return PageActionResult(CONFIRMED)


def request_reschedule_from_page(
    session: Session, appt: Appointment, settings: Settings, preferred_window: str
) -> PageActionResult:
    """A reschedule request for the team, with the patient's preferred window."""
    return _team_request(
        session, appt, settings, "remarcar", preferred_window, RESCHEDULE_REQUESTED
    )


def cancel_from_page(
    session: Session, appt: Appointment, settings: Settings, now: datetime | None = None
) -> PageActionResult:
    """PATIENT_CANCEL_MODE `direct`: cancelled here; `request` (the default,
    also while the setting does not exist): the team is asked to cancel."""
    if getattr(settings, "PATIENT_CANCEL_MODE", "request") == "direct":
        cancel_appointment(session, appt, settings, now)
        log.info(
            "appointment cancelled on the self-service page", extra={"appointment_id": str(appt.id)}
        )
        return PageActionResult(CANCELLED)
    return _team_request(session, appt, settings, "cancelar", "", CANCEL_REQUESTED)


def _team_request(
    session: Session,
    appt: Appointment,
    settings: Settings,
    request: str,
    note: str,
    outcome: str,
) -> PageActionResult:
    result = PageActionResult(outcome)
    if not settings.EMAIL_SUPORTE:
        log.warning(
            "patient request not emailed: EMAIL_SUPORTE not set", extra={"request": request}
        )
        return result
    contact = session.get(Contact, appt.contact_id)
    data: dict[str, Any] = {
        **template_data(appt, contact, settings),
        "pedido": request,
        "resposta": note[:PREFERRED_WINDOW_MAX] or "(sem preferência de horário)",
        "canal": _CHANNEL_LABEL,
        "conversation_id": "(nenhuma: pedido feito na página)",
    }
    data["link"] = ""  # the patient's capability link is not the team's to hold
    created = create_outbound_message(
        session,
        OutboundRequest(
            channel="email",
            to_address=settings.EMAIL_SUPORTE,
            template="pedido_paciente",
            template_data=data,
            purpose="alert",
            subject_contact_id=appt.contact_id,
            # One request per appointment version and kind: a double submit
            # (or a reload of the POST) does not e-mail the team twice.
            idempotency_key=f"page:{appt.id}:v{appt.version}:{request}",
            metadata={"appointment_id": str(appt.id), "source": "self_service_page"},
            respect_opt_out=False,  # a team address, not the patient
        ),
    )
    if created.should_enqueue:
        message_id = created.message_id
        result.after_commit.append(lambda: enqueue_send(message_id, "email"))
    return result
