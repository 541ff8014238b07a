"""Replies that act: a patient's short answer is a command (the first
reaction handler, before triage/automations).

| reply (any channel)                              | action                                   |
| ------------------------------------------------ | ---------------------------------------- |
| 1, SIM, CONFIRMO, CONFIRMAR; payload CONFIRM_<id> | appointment `confirmed`, reply            |
|                                                  | `confirmacao_presenca`                    |
| 2, NÃO, REMARCAR                                 | reschedule request: team email            |
|                                                  | (EMAIL_SUPORTE), conversation needs_agent |
| CANCELAR                                         | cancellation request for the team — an    |
|                                                  | appointment word in a clinic, NOT opt-out |
| SAIR, PARAR, STOP, DESCADASTRAR                  | opt-out of the channel the reply came on  |
| SAIR DE TUDO, PARAR TUDO, STOP ALL, STOPALL…     | opt-out of every channel (`all`)          |

Matching: the whole message, after removing accents (unidecode), case,
punctuation and extra whitespace — "Sim!", " sim ", "SIM, confirmo" match;
"não posso ir amanhã" does not (it is a sentence for a human, left to triage).
Appointment commands link to the patient's nearest upcoming appointment
(scheduled or confirmed, not started); without one they are not commands.
An opt-out is recorded once and confirmed once (a second SAIR changes nothing);
every later send honours it (outbound creation and the send worker check).

Only the patient acts for the patient (ARCHITECTURE rule 11): a command is
honoured only when the channel vouched for the sender (`Message.sender_verified`:
a Twilio/Meta number, an authenticated e-mail). From anyone else (the public
form, an e-mail whose `From:` nothing authenticates) a command that would have
acted (an opt-out; an appointment command with an upcoming appointment) is a
note for the team instead:
a `command_unverified` event, the conversation marked for an agent, an e-mail
to EMAIL_SUPORTE (`comando_nao_verificado`); an opt-out additionally asks the
patient, on their verified channel only, to confirm it from there
(`optout_verificar`).

Idempotent: the reaction task may run twice; replies use idempotency keys
derived from the inbound message id, state changes are no-ops the second time.
Handled commands set `ctx.consumed` so automations skip their auto-ack.
"""

from __future__ import annotations

import logging
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session
from unidecode import unidecode

from shared.contacts.conversations import flag_needs_agent
from shared.contacts.directory import contact_address, verified_address
from shared.contacts.optouts import record_opt_out
from shared.core.channels import CHANNELS, address_kind, channels_addressed_to, is_channel
from shared.core.config import Settings, get_settings
from shared.core.enums import OPT_OUT_ALL, AppointmentStatus, Direction, IdentityKind
from shared.core.models import Appointment, Contact, Conversation, Message, MessageEvent
from shared.core.webhook_events import appointment_data, appointment_key, record_event
from shared.inbound.reactions import ReactionContext
from shared.outbound.create import OutboundRequest, create_outbound_message, enqueue_send

log = logging.getLogger(__name__)

CONFIRM, RESCHEDULE, CANCEL_REQUEST, OPT_OUT, OPT_OUT_EVERYTHING = (
    "confirm",
    "reschedule",
    "cancel_request",
    "opt_out",
    "opt_out_all",
)
_WORDS: dict[str, frozenset[str]] = {
    CONFIRM: frozenset({"1", "SIM", "CONFIRMO", "CONFIRMAR"}),
    RESCHEDULE: frozenset({"2", "NAO", "REMARCAR"}),
    CANCEL_REQUEST: frozenset({"CANCELAR"}),
    OPT_OUT: frozenset({"SAIR", "PARAR", "STOP", "DESCADASTRAR"}),
}
_OPT_OUT_ALL_PHRASES = frozenset(
    {
        "SAIR DE TUDO",
        "SAIR TUDO",
        "PARAR TUDO",
        "PARAR DE TUDO",
        "DESCADASTRAR TUDO",
        "DESCADASTRAR DE TUDO",
        "STOP ALL",
        "STOPALL",
    }
)
_CONFIRM_PAYLOAD = re.compile(r"^CONFIRM_([0-9a-fA-F-]{36})$")
_NON_WORD = re.compile(r"[^A-Z0-9_]+")
_MAX_COMMAND_CHARS = 60  # longer messages are sentences, not commands
_CHANNEL_LABEL = {row.name: row.label for row in CHANNELS}


def normalize_reply(text: str) -> str:
    """'  Não! ' → 'NAO'; 'Sim, confirmo.' → 'SIM CONFIRMO'."""
    return " ".join(_NON_WORD.sub(" ", unidecode(text).upper()).split())


@dataclass(frozen=True)
class Command:
    kind: str
    keyword: str
    appointment_id: uuid.UUID | None = None  # from a CONFIRM_<id> payload


def classify(text: str | None, button_payload: str | None = None) -> Command | None:
    for raw in (button_payload, text):
        if raw:
            m = _CONFIRM_PAYLOAD.match(raw.strip())
            if m:
                try:
                    return Command(CONFIRM, "CONFIRM_", uuid.UUID(m.group(1)))
                except ValueError:
                    return None
    if not text or len(text) > _MAX_COMMAND_CHARS:
        return None
    words = normalize_reply(text)
    if not words:
        return None
    if words in _OPT_OUT_ALL_PHRASES:
        return Command(OPT_OUT_EVERYTHING, words)
    tokens = set(words.split())
    for kind, vocabulary in _WORDS.items():
        if tokens <= vocabulary:
            return Command(kind, words)
    return None


# --- the handler ---------------------------------------------------------------------------


def handle_reply(session: Session, ctx: ReactionContext) -> None:
    """Reaction handler (shared.inbound.reactions.HANDLER_PATHS, first)."""
    message = session.get(Message, ctx.message_id)
    if message is None or message.direction != Direction.INBOUND.value:
        return
    if message.contact_id is None:
        return
    payload = (message.metadata_ or {}).get("button_payload")
    command = classify(message.text, payload if isinstance(payload, str) else None)
    if command is None:
        return
    settings = get_settings()
    now = datetime.now(UTC)
    if command.kind in (OPT_OUT, OPT_OUT_EVERYTHING):
        if message.sender_verified:
            _opt_out(session, ctx, message, command)
        else:
            _unverified_command(session, ctx, message, command, settings)
        return
    appt = _linked_appointment(session, message.contact_id, command.appointment_id, now)
    if appt is None:
        ctx.notes["reply"] = f"{command.kind}: no upcoming appointment; left to triage"
        return
    if not message.sender_verified:
        _unverified_command(session, ctx, message, command, settings)
        return
    if command.kind == CONFIRM:
        _confirm(session, ctx, message, appt, settings, now)
    else:
        request = "remarcar" if command.kind == RESCHEDULE else "cancelar"
        _team_request(session, ctx, message, appt, request, settings)
    ctx.consumed = True


def _linked_appointment(
    session: Session, contact_id: uuid.UUID, wanted: uuid.UUID | None, now: datetime
) -> Appointment | None:
    """The appointment named by a payload (if it is this patient's), else the
    nearest upcoming one."""
    query = (
        select(Appointment)
        .where(
            Appointment.contact_id == contact_id,
            Appointment.status.in_(
                [AppointmentStatus.SCHEDULED.value, AppointmentStatus.CONFIRMED.value]
            ),
            Appointment.starts_at > now,
        )
        .order_by(Appointment.starts_at)
        .limit(1)
        .with_for_update()
    )
    if wanted is not None:
        query = query.where(Appointment.id == wanted)
    return session.scalars(query).first()


def _reply_route(session: Session, message: Message, sms_only: bool) -> tuple[str, str] | None:
    """Answer on the channel the patient used (WhatsApp: inside the service
    window they just opened), else SMS; email only where a template exists."""
    assert message.contact_id is not None
    phone = contact_address(session, message.contact_id, IdentityKind.PHONE.value)
    if message.channel in channels_addressed_to(IdentityKind.PHONE.value) and phone:
        return message.channel, phone
    if phone:
        return "sms", phone
    if not sms_only:
        email = contact_address(session, message.contact_id, IdentityKind.EMAIL.value)
        if email:
            return "email", email
    return None


def _send(session: Session, ctx: ReactionContext, req: OutboundRequest) -> None:
    created = create_outbound_message(session, req)
    if created.should_enqueue:
        message_id, channel = created.message_id, req.channel
        ctx.after_commit.append(lambda: enqueue_send(message_id, channel))


def _confirm(
    session: Session,
    ctx: ReactionContext,
    message: Message,
    appt: Appointment,
    settings: Settings,
    now: datetime,
) -> None:
    from shared.scheduling.planner import template_data

    if appt.status == AppointmentStatus.SCHEDULED.value:
        # Not a version bump: the reminders stay valid for a confirmed visit.
        appt.status = AppointmentStatus.CONFIRMED.value
        appt.updated_at = now
        record_event(
            session,
            "appointment.confirmed",
            appointment_data(appt, channel=message.channel, via="reply"),
            ordering_key=appointment_key(appt.id),
        )
    ctx.notes["reply"] = f"confirmed appointment {appt.id}"
    route = _reply_route(session, message, sms_only=True)
    if route is None:
        return
    channel, to = route
    contact = session.get(Contact, appt.contact_id)
    _send(
        session,
        ctx,
        OutboundRequest(
            channel=channel,
            to_address=to,
            contact_id=appt.contact_id,
            conversation_id=message.conversation_id,
            template="confirmacao_presenca",
            template_data=template_data(appt, contact, settings),
            purpose="auto_reply",
            idempotency_key=f"reply:{message.id}:confirm",
            metadata={"appointment_id": str(appt.id), "in_reply_to": str(message.id)},
        ),
    )


# The booking system's event for a patient's request (shared/core/webhook_events.py).
_REQUEST_EVENT = {
    "remarcar": "appointment.reschedule_requested",
    "cancelar": "appointment.cancel_requested",
}


def _team_request(
    session: Session,
    ctx: ReactionContext,
    message: Message,
    appt: Appointment,
    request: str,
    settings: Settings,
) -> None:
    from shared.scheduling.planner import template_data

    if message.conversation_id is not None:
        conversation = session.get(Conversation, message.conversation_id)
        if conversation is not None:
            flag_needs_agent(session, conversation, f"{request}_request")
    record_event(
        session,
        _REQUEST_EVENT[request],
        appointment_data(appt, channel=message.channel, via="reply"),
        ordering_key=appointment_key(appt.id),
        # The reaction may run twice: one event per patient message.
        idempotency_key=f"reply:{message.id}:{request}",
    )
    ctx.notes["reply"] = f"{request} request for appointment {appt.id}"
    if not settings.EMAIL_SUPORTE:
        log.warning(
            "patient request not emailed: EMAIL_SUPORTE not set", extra={"request": request}
        )
        return
    contact = session.get(Contact, appt.contact_id)
    data: dict[str, Any] = {
        **template_data(appt, contact, settings),
        "pedido": request,
        "resposta": (message.text or "")[:100],
        "canal": _CHANNEL_LABEL.get(message.channel, message.channel),
        "conversation_id": str(message.conversation_id or ""),
    }
    _send(
        session,
        ctx,
        OutboundRequest(
            channel="email",
            to_address=settings.EMAIL_SUPORTE,
            template="pedido_paciente",
            template_data=data,
            purpose="alert",
            subject_contact_id=appt.contact_id,
            idempotency_key=f"reply:{message.id}:{request}",
            metadata={"appointment_id": str(appt.id), "in_reply_to": str(message.id)},
            respect_opt_out=False,  # a team address, not the patient
        ),
    )


def _opt_out(
    session: Session,
    ctx: ReactionContext,
    message: Message,
    command: Command,
) -> None:
    assert message.contact_id is not None
    scope = _opt_out_scope(message, command)
    ctx.consumed = True
    new = record_opt_out(session, message.contact_id, scope, command.keyword, source="reply")
    ctx.notes["reply"] = f"opt-out {scope}" + ("" if new else " (already recorded)")
    if not new:
        return  # confirmed once
    if scope == OPT_OUT_ALL:
        route = _reply_route(session, message, sms_only=False)
        label = "SMS, WhatsApp ou email"
    else:
        # Confirm on the channel the patient opted out of.
        address = contact_address(session, message.contact_id, address_kind(scope))
        route = (scope, address) if address else None
        label = _CHANNEL_LABEL[scope]
    if route is None:
        return
    channel, to = route
    _send(
        session,
        ctx,
        OutboundRequest(
            channel=channel,
            to_address=to,
            contact_id=message.contact_id,
            conversation_id=message.conversation_id,
            template="optout_confirmacao",
            template_data={"canal": label},
            purpose="auto_reply",
            idempotency_key=f"reply:{message.id}:optout",
            metadata={"in_reply_to": str(message.id), "opt_out": scope},
            # The one message after an opt-out: its confirmation.
            respect_opt_out=False,
        ),
    )


# --- commands from a sender nobody vouched for -----------------------------------------

_REQUEST_LABEL = {
    CONFIRM: "confirmar a consulta",
    RESCHEDULE: "remarcar a consulta",
    CANCEL_REQUEST: "cancelar a consulta",
    OPT_OUT_EVERYTHING: "parar de receber todas as mensagens",
}


def _opt_out_scope(message: Message, command: Command) -> str:
    """The channel the patient wrote on; a channel we never send on (web form)
    can only mean "stop contacting me": all."""
    if command.kind == OPT_OUT_EVERYTHING or not is_channel(message.channel):
        return OPT_OUT_ALL
    return message.channel


def _unverified_command(
    session: Session,
    ctx: ReactionContext,
    message: Message,
    command: Command,
    settings: Settings,
) -> None:
    """Nothing changes for the patient; the team is told, and for an opt-out
    the patient is asked on a verified address to confirm it from there."""
    assert message.contact_id is not None
    ctx.consumed = True  # handled (by people): no auto-acknowledgement
    if message.conversation_id is not None:
        conversation = session.get(Conversation, message.conversation_id)
        if conversation is not None:
            flag_needs_agent(session, conversation, "unverified_command")
    opt_out = command.kind in (OPT_OUT, OPT_OUT_EVERYTHING)
    scope = _opt_out_scope(message, command) if opt_out else None
    confirmation = _ask_to_confirm_opt_out(session, ctx, message, scope) if scope else None
    ctx.notes["reply"] = f"{command.kind} from an unverified sender: left to the team"
    recorded = session.scalar(
        select(MessageEvent.id).where(
            MessageEvent.message_id == message.id, MessageEvent.event == "command_unverified"
        )
    )
    if recorded is None:  # the reaction may run twice
        session.add(
            MessageEvent(
                message_id=message.id,
                event="command_unverified",
                detail=f"{command.kind} not acted on: the sender is not verified for this contact",
                payload={
                    "command": command.kind,
                    "opt_out_scope": scope,
                    "confirmation_asked_on": confirmation,
                },
            )
        )
    if not settings.EMAIL_SUPORTE:
        log.warning(
            "unverified command not emailed: EMAIL_SUPORTE not set",
            extra={"command": command.kind},
        )
        return
    contact = session.get(Contact, message.contact_id)
    if scope is not None and scope != OPT_OUT_ALL:
        request = f"parar de receber mensagens por {_CHANNEL_LABEL[scope]}"
    else:
        request = _REQUEST_LABEL[command.kind]
    _send(
        session,
        ctx,
        OutboundRequest(
            channel="email",
            to_address=settings.EMAIL_SUPORTE,
            template="comando_nao_verificado",
            template_data={
                "paciente_nome": (contact.name if contact else None) or "(sem nome)",
                "pedido": request,
                "resposta": (message.text or "")[:100],
                "canal": _CHANNEL_LABEL.get(message.channel, message.channel),
                "confirmacao_canal": _CHANNEL_LABEL.get(confirmation or "", confirmation or ""),
                "conversation_id": str(message.conversation_id or ""),
            },
            purpose="alert",
            idempotency_key=f"reply:{message.id}:unverified",
            metadata={"in_reply_to": str(message.id), "command": command.kind},
            respect_opt_out=False,  # a team address, not the patient
            # About the patient (name, their words): erasure must reach it.
            subject_contact_id=message.contact_id,
        ),
    )


def _ask_to_confirm_opt_out(
    session: Session, ctx: ReactionContext, message: Message, scope: str
) -> str | None:
    """Ask the patient, on a verified address only, to send the opt-out from
    there (where it will be honoured). Returns the channel used, or None."""
    assert message.contact_id is not None
    route: tuple[str, str] | None = None
    phone = verified_address(session, message.contact_id, IdentityKind.PHONE.value)
    email = verified_address(session, message.contact_id, IdentityKind.EMAIL.value)
    if scope == "email":
        route = ("email", email) if email else None
    elif scope in channels_addressed_to(IdentityKind.PHONE.value):
        route = ("sms", phone) if phone else None
    else:
        route = ("sms", phone) if phone else (("email", email) if email else None)
    if route is None:
        return None
    channel, to = route
    label = "SMS, WhatsApp ou email" if scope == OPT_OUT_ALL else _CHANNEL_LABEL[scope]
    _send(
        session,
        ctx,
        OutboundRequest(
            channel=channel,
            to_address=to,
            contact_id=message.contact_id,
            conversation_id=message.conversation_id,
            template="optout_verificar",
            template_data={
                "canal": label,
                "palavra": "PARAR TUDO" if scope == OPT_OUT_ALL else "SAIR",
            },
            purpose="auto_reply",
            idempotency_key=f"reply:{message.id}:optout-verify",
            metadata={"in_reply_to": str(message.id), "opt_out_requested": scope},
        ),
    )
    return channel
