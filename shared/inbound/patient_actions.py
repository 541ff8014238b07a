"""What a patient asks about one appointment — confirm, ask to reschedule,
cancel — whatever the path: a reply ("1", "SIM"), a button tap
(`CONFIRM_<id>`…), the self-service page, an agent in the console. The one
place these actions live; every path calls these functions with `via` naming
it ("reply", "button", "page", "console").

The caller has already established WHO acts (ARCHITECTURE rule 11: only a
verified identity acts for a patient) and that the appointment is theirs;
these functions change the appointment, tell the team where needed and
answer the patient, all in the caller's transaction. Sends are enqueued by
the caller after its commit (`ActionResult.after_commit`).

    confirm            scheduled → confirmed; answer `confirmacao_presenca`.
                       Later reminders switch to their no-question variant
                       (shared/scheduling/plan.py `?confirmed=`).
    request_reschedule the team is e-mailed (`pedido_paciente`, EMAIL_SUPORTE),
                       the conversation marked for an agent; answer
                       `remarcacao_recebida` (with the preferred window).
    cancel             PATIENT_CANCEL_MODE=request: like a reschedule request
                       (`pedido_paciente` "cancelar"), answer
                       `cancelamento_recebido`. =direct: the appointment is
                       cancelled with its pending messages in this transaction
                       (shared/scheduling/appointments.py cancel_appointment),
                       which also frees the slot for the waitlist; answer
                       `cancelamento` (unless CANCELLATION_NOTICE_CHANNELS
                       already sends that notice on the answer's channel).

Idempotent: answers carry idempotency keys (from the inbound message id when
there is one), state changes are no-ops the second time.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.orm import Session

from shared.contacts.conversations import flag_needs_agent
from shared.contacts.directory import contact_address
from shared.core.channels import CHANNELS, address_kind, channels_addressed_to, is_channel
from shared.core.config import Settings, get_settings
from shared.core.enums import AppointmentStatus, IdentityKind
from shared.core.models import Appointment, Contact, Conversation, Message
from shared.core.webhook_events import appointment_data, appointment_key, record_event
from shared.outbound.create import OutboundRequest, create_outbound_message, enqueue_send
from shared.scheduling.appointments import cancel_appointment, get_for_update
from shared.scheduling.planner import template_data

log = logging.getLogger(__name__)

CONFIRMED = "confirmed"
RESCHEDULE_REQUESTED = "reschedule_requested"
CANCEL_REQUESTED = "cancel_requested"
CANCELLED = "cancelled"
NOT_ACTIONABLE = "not_actionable"  # cancelled already, or the visit has started

_LIVE = (AppointmentStatus.SCHEDULED.value, AppointmentStatus.CONFIRMED.value)
_CHANNEL_LABEL = {row.name: row.label for row in CHANNELS}
_VIA_LABEL = {"page": "a página da consulta", "console": "o console da equipe"}


@dataclass
class ActionResult:
    appointment_id: uuid.UUID
    outcome: str
    # Enqueue the answers once the caller's transaction has committed.
    after_commit: list[Callable[[], None]] = field(default_factory=list)


def _now(now: datetime | None) -> datetime:
    return now or datetime.now(UTC)


def _actionable(appt: Appointment, now: datetime) -> bool:
    return appt.status in _LIVE and appt.starts_at > now


def _answer_route(
    session: Session, contact_id: uuid.UUID, message: Message | None
) -> tuple[str, str] | None:
    """Answer on the channel the patient used (WhatsApp, Messenger, Instagram:
    inside the service window they just opened; a channel with an address of
    its own — a Telegram chat, a PSID, an IGSID — to the id that wrote), else
    SMS to their phone."""
    if message is not None and is_channel(message.channel):
        own_kind = address_kind(message.channel)
        if own_kind not in (IdentityKind.PHONE.value, IdentityKind.EMAIL.value):
            own = contact_address(session, contact_id, own_kind)
            if own:
                return message.channel, own
    phone = contact_address(session, contact_id, IdentityKind.PHONE.value)
    if phone is None:
        return None
    if message is not None and message.channel in channels_addressed_to(IdentityKind.PHONE.value):
        return message.channel, phone
    return "sms", phone


def _send(session: Session, result: ActionResult, req: OutboundRequest) -> None:
    created = create_outbound_message(session, req)
    if created.should_enqueue:
        message_id, channel = created.message_id, req.channel
        result.after_commit.append(lambda: enqueue_send(message_id, channel))


def _key(message: Message | None, appt: Appointment, via: str, action: str) -> str:
    if message is not None:
        return f"reply:{message.id}:{action}"
    # No inbound message (page, console): once per appointment version.
    return f"action:{via}:{appt.id}:v{appt.version}:{action}"


def _answer(
    session: Session,
    result: ActionResult,
    appt: Appointment,
    template: str,
    extra: dict[str, Any],
    *,
    message: Message | None,
    via: str,
    action: str,
    settings: Settings,
) -> None:
    route = _answer_route(session, appt.contact_id, message)
    if route is None:
        return
    channel, to = route
    if template == "cancelamento" and channel in settings.CANCELLATION_NOTICE_CHANNELS:
        return  # cancel_rows already sends this very notice on this channel
    contact = session.get(Contact, appt.contact_id)
    metadata: dict[str, Any] = {"appointment_id": str(appt.id), "via": via}
    if message is not None:
        metadata["in_reply_to"] = str(message.id)
    _send(
        session,
        result,
        OutboundRequest(
            channel=channel,
            to_address=to,
            contact_id=appt.contact_id,
            conversation_id=message.conversation_id if message is not None else None,
            template=template,
            template_data={**template_data(appt, contact, settings), **extra},
            purpose="auto_reply",
            idempotency_key=_key(message, appt, via, action),
            metadata=metadata,
        ),
    )


def _lock(session: Session, appointment_id: uuid.UUID) -> Appointment:
    # Appointment and its scheduled rows locked: a scheduler tick skips them
    # until we commit (shared/scheduling/appointments.py get_for_update).
    return get_for_update(session, appointment_id)


def confirm(
    session: Session,
    appointment_id: uuid.UUID,
    *,
    via: str,
    now: datetime | None = None,
    message: Message | None = None,
    settings: Settings | None = None,
) -> ActionResult:
    """The patient will come. Not a version bump: the reminders stay valid;
    those still to go out ask nothing any more (planner.confirmed_template)."""
    settings = settings or get_settings()
    now = _now(now)
    appt = _lock(session, appointment_id)
    if not _actionable(appt, now):
        return ActionResult(appt.id, NOT_ACTIONABLE)
    if appt.status == AppointmentStatus.SCHEDULED.value:
        appt.status = AppointmentStatus.CONFIRMED.value
        appt.updated_at = now
        _tell_booking_system(session, "appointment.confirmed", appt, message, via)
    result = ActionResult(appt.id, CONFIRMED)
    _answer(
        session, result, appt, "confirmacao_presenca", {},
        message=message, via=via, action="confirm", settings=settings,
    )
    return result


def request_reschedule(
    session: Session,
    appointment_id: uuid.UUID,
    *,
    via: str,
    preferred_window: str | None = None,
    now: datetime | None = None,
    message: Message | None = None,
    settings: Settings | None = None,
) -> ActionResult:
    """The team is asked to find another time (the booking system owns the
    calendar); the patient is told it was received."""
    settings = settings or get_settings()
    now = _now(now)
    appt = _lock(session, appointment_id)
    if not _actionable(appt, now):
        return ActionResult(appt.id, NOT_ACTIONABLE)
    window = (preferred_window or "").strip()[:200]
    result = ActionResult(appt.id, RESCHEDULE_REQUESTED)
    _tell_team(session, result, appt, "remarcar", window, message=message, via=via,
               settings=settings)
    _answer(
        session, result, appt, "remarcacao_recebida", {"janela": window},
        message=message, via=via, action="remarcar-answer", settings=settings,
    )
    return result


def cancel(
    session: Session,
    appointment_id: uuid.UUID,
    *,
    via: str,
    now: datetime | None = None,
    message: Message | None = None,
    settings: Settings | None = None,
) -> ActionResult:
    """PATIENT_CANCEL_MODE: `request` asks the team, `direct` cancels now."""
    settings = settings or get_settings()
    now = _now(now)
    appt = _lock(session, appointment_id)
    if not _actionable(appt, now):
        return ActionResult(appt.id, NOT_ACTIONABLE)
    if settings.PATIENT_CANCEL_MODE == "direct":
        # Pending reminders cancelled and the slot freed (waitlist) in this
        # same transaction, by the function the booking system's cancel uses.
        # `cancelled_by` other than the booking system: it is told
        # (appointment.cancelled), unlike a cancellation it sent itself.
        cancel_appointment(session, appt, settings, now, cancelled_by="patient")
        result = ActionResult(appt.id, CANCELLED)
        _answer(
            session, result, appt, "cancelamento", {},
            message=message, via=via, action="cancelar-answer", settings=settings,
        )
        return result
    result = ActionResult(appt.id, CANCEL_REQUESTED)
    _tell_team(session, result, appt, "cancelar", "", message=message, via=via,
               settings=settings)
    _answer(
        session, result, appt, "cancelamento_recebido", {},
        message=message, via=via, action="cancelar-answer", settings=settings,
    )
    return result


# The booking system's event for a patient's request (shared/core/webhook_events.py).
_REQUEST_EVENT = {
    "remarcar": "appointment.reschedule_requested",
    "cancelar": "appointment.cancel_requested",
}


def _tell_booking_system(
    session: Session, event_type: str, appt: Appointment, message: Message | None, via: str
) -> None:
    """The outbound webhook of a patient's action, in the caller's transaction
    (the outbox): one event per patient message, or per appointment version
    and path when there is none (a page or console action may be repeated)."""
    extra: dict[str, Any] = {"via": via}
    if message is not None:
        extra["channel"] = message.channel
        key = f"{via}:{message.id}:{event_type}"
    else:
        key = f"{via}:{appt.id}:v{appt.version}:{event_type}"
    record_event(
        session,
        event_type,
        appointment_data(appt, **extra),
        ordering_key=appointment_key(appt.id),
        idempotency_key=key,
    )


def _tell_team(
    session: Session,
    result: ActionResult,
    appt: Appointment,
    request: str,
    window: str,
    *,
    message: Message | None,
    via: str,
    settings: Settings,
) -> None:
    """A request for people: the conversation needs an agent, the booking
    system is told (appointment.reschedule_requested / cancel_requested),
    EMAIL_SUPORTE gets `pedido_paciente`."""
    if message is not None and message.conversation_id is not None:
        conversation = session.get(Conversation, message.conversation_id)
        if conversation is not None:
            flag_needs_agent(session, conversation, f"{request}_request")
    _tell_booking_system(session, _REQUEST_EVENT[request], appt, message, via)
    if not settings.EMAIL_SUPORTE:
        log.warning(
            "patient request not emailed: EMAIL_SUPORTE not set", extra={"request": request}
        )
        return
    contact = session.get(Contact, appt.contact_id)
    if message is not None:
        said = (message.text or "")[:100]
        where = _CHANNEL_LABEL.get(message.channel, message.channel)
    else:
        said, where = request, _VIA_LABEL.get(via, via)
    data: dict[str, Any] = {
        **template_data(appt, contact, settings),
        "pedido": request,
        "janela": window,
        "resposta": said,
        "canal": where,
        "conversation_id": str(message.conversation_id or "") if message is not None else "",
        # The patient's self-service link is a capability: the team's e-mail
        # must not carry it (whoever holds it acts for the patient).
        "link": "",
    }
    metadata: dict[str, Any] = {"appointment_id": str(appt.id), "via": via}
    if message is not None:
        metadata["in_reply_to"] = str(message.id)
    _send(
        session,
        result,
        OutboundRequest(
            channel="email",
            to_address=settings.EMAIL_SUPORTE,
            template="pedido_paciente",
            template_data=data,
            purpose="alert",
            subject_contact_id=appt.contact_id,
            idempotency_key=_key(message, appt, via, request),
            metadata=metadata,
            respect_opt_out=False,  # a team address, not the patient
        ),
    )
