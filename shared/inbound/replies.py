"""Replies that act: a patient's short answer is a command (the first
reaction handler, before triage/automations).

| reply (any channel)                                | action (shared/inbound/patient_actions.py) |
| -------------------------------------------------- | ------------------------------------------ |
| 1, SIM, CONFIRMO, CONFIRMA(R); payload CONFIRM_<id> | appointment `confirmed`, answered          |
| 2, NÃO, REMARCA(R); payload RESCHEDULE_<id>        | reschedule request: team e-mail            |
|                                                    | (EMAIL_SUPORTE), needs_agent; answered     |
| 3, CANCELA(R); payload CANCEL_<id>                 | PATIENT_CANCEL_MODE: request (team told)   |
|                                                    | or direct (cancelled); answered — an       |
|                                                    | appointment word in a clinic, NOT opt-out  |
| QUERO; payload CLAIM_<offer id>                    | claims a waitlist offer (waitlist_offers)  |
| SAIR, PARAR, STOP, DESCADASTRAR                    | opt-out of the channel the reply came on   |
| SAIR DE TUDO, PARAR TUDO, STOP ALL, STOPALL…       | opt-out of every channel (`all`)           |

Matching: the whole message, after removing accents (unidecode), case,
punctuation and extra whitespace — "Sim!", " sim ", "SIM, confirmo" match;
"não posso ir amanhã" does not (it is a sentence for a human, left to triage).
A button payload names its appointment: the tap acts on THAT appointment
(even when the patient has an earlier one), and only if it is the sender's
own — a payload naming someone else's appointment is ignored and logged (ids
only). A typed answer acts on the appointment the latest reminder sent to
the patient was about (while it is upcoming), else on the nearest upcoming
one (scheduled or confirmed, not started); without one it is not a command.
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

from sqlalchemy import select
from sqlalchemy.orm import Session
from unidecode import unidecode

from shared.contacts.conversations import flag_needs_agent
from shared.contacts.directory import contact_address, verified_address
from shared.contacts.optouts import record_opt_out
from shared.core.channels import CHANNELS, address_kind, channels_addressed_to, is_channel
from shared.core.config import Settings, get_settings
from shared.core.enums import (
    OPT_OUT_ALL,
    AppointmentStatus,
    Direction,
    IdentityKind,
    MessageStatus,
)
from shared.core.models import Appointment, Contact, Conversation, Message, MessageEvent
from shared.inbound import patient_actions
from shared.inbound.reactions import ReactionContext
from shared.inbound.waitlist_offers import claim_offer, find_offer
from shared.outbound.create import OutboundRequest, create_outbound_message, enqueue_send

log = logging.getLogger(__name__)

CONFIRM, RESCHEDULE, CANCEL_REQUEST, CLAIM, OPT_OUT, OPT_OUT_EVERYTHING = (
    "confirm",
    "reschedule",
    "cancel_request",  # a patient's cancel: a request or direct (PATIENT_CANCEL_MODE)
    "claim",
    "opt_out",
    "opt_out_all",
)
_WORDS: dict[str, frozenset[str]] = {
    CONFIRM: frozenset({"1", "SIM", "CONFIRMO", "CONFIRMA", "CONFIRMAR"}),
    RESCHEDULE: frozenset({"2", "NAO", "REMARCA", "REMARCAR"}),
    CANCEL_REQUEST: frozenset({"3", "CANCELA", "CANCELAR"}),
    CLAIM: frozenset({"QUERO"}),
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
# Button payloads (shared/templates/<channel>/<template>.buttons).
_APPOINTMENT_PAYLOAD = re.compile(r"^(CONFIRM|RESCHEDULE|CANCEL)_([0-9a-fA-F-]{36})$")
_PAYLOAD_KIND = {"CONFIRM": CONFIRM, "RESCHEDULE": RESCHEDULE, "CANCEL": CANCEL_REQUEST}
_CLAIM_PAYLOAD = re.compile(r"^CLAIM_(\d{1,18})$")
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
    appointment_id: uuid.UUID | None = None  # from a CONFIRM_/RESCHEDULE_/CANCEL_<id> payload
    offer_id: int | None = None  # from a CLAIM_<offer id> payload


def _from_payload(raw: str) -> Command | None | bool:
    """A button payload's command; False when it is not a payload at all."""
    m = _APPOINTMENT_PAYLOAD.match(raw)
    if m:
        try:
            return Command(_PAYLOAD_KIND[m.group(1)], f"{m.group(1)}_", uuid.UUID(m.group(2)))
        except ValueError:
            return None
    m = _CLAIM_PAYLOAD.match(raw)
    if m:
        return Command(CLAIM, "CLAIM_", offer_id=int(m.group(1)))
    return False


def classify(text: str | None, button_payload: str | None = None) -> Command | None:
    for raw in (button_payload, text):
        if raw:
            found = _from_payload(raw.strip())
            if found is not False:
                return found if isinstance(found, Command) else None
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
    if command.kind == CLAIM:
        _claim(session, ctx, message, command, settings, now)
        return
    if command.appointment_id is not None and not _owns(
        session, message.contact_id, command.appointment_id
    ):
        # A payload naming an appointment that is not this sender's: ignored.
        ctx.consumed = True
        ctx.notes["reply"] = f"{command.kind}: payload names another contact's appointment"
        log.warning(
            "button payload for an appointment of another contact ignored",
            extra={"message_id": str(message.id), "command": command.kind},
        )
        return
    appt = _linked_appointment(session, message.contact_id, command.appointment_id, now)
    if appt is None:
        ctx.notes["reply"] = f"{command.kind}: no upcoming appointment; left to triage"
        return
    if not message.sender_verified:
        _unverified_command(session, ctx, message, command, settings)
        return
    act = {
        CONFIRM: patient_actions.confirm,
        CANCEL_REQUEST: patient_actions.cancel,
    }.get(command.kind)
    via = "button" if command.appointment_id is not None else "reply"
    if act is not None:
        result = act(session, appt.id, via=via, now=now, message=message, settings=settings)
    else:
        result = patient_actions.request_reschedule(
            session, appt.id, via=via, now=now, message=message, settings=settings
        )
    ctx.after_commit.extend(result.after_commit)
    ctx.notes["reply"] = f"{result.outcome} appointment {appt.id}"
    ctx.consumed = True


def _owns(session: Session, contact_id: uuid.UUID, appointment_id: uuid.UUID) -> bool:
    owner = session.scalar(select(Appointment.contact_id).where(Appointment.id == appointment_id))
    return owner is None or owner == contact_id  # unknown: "no upcoming appointment" below


def _linked_appointment(
    session: Session, contact_id: uuid.UUID, wanted: uuid.UUID | None, now: datetime
) -> Appointment | None:
    """The appointment named by a payload (if it is this patient's and
    upcoming), else the one the latest reminder was about (if upcoming), else
    the nearest upcoming one."""
    upcoming = (
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
    )
    if wanted is None:
        wanted = _latest_reminded(session, contact_id)
        if wanted is not None:
            found = session.scalars(upcoming.where(Appointment.id == wanted)).first()
            if found is not None:
                return found
        return session.scalars(upcoming).first()
    return session.scalars(upcoming.where(Appointment.id == wanted)).first()


def _latest_reminded(session: Session, contact_id: uuid.UUID) -> uuid.UUID | None:
    """The appointment of the latest reminder sent to this contact."""
    raw = session.scalar(
        select(Message.metadata_["appointment_id"].astext)
        .where(
            Message.contact_id == contact_id,
            Message.direction == Direction.OUTBOUND.value,
            Message.purpose == "reminder",
            Message.status.in_(
                [
                    MessageStatus.SENT.value,
                    MessageStatus.DELIVERED.value,
                    MessageStatus.READ.value,
                    MessageStatus.SENDING.value,
                    MessageStatus.UNKNOWN.value,
                ]
            ),
        )
        .order_by(Message.created_at.desc())
        .limit(1)
    )
    try:
        return uuid.UUID(raw) if raw else None
    except ValueError:
        return None


def _claim(
    session: Session,
    ctx: ReactionContext,
    message: Message,
    command: Command,
    settings: Settings,
    now: datetime,
) -> None:
    """QUERO / CLAIM_<offer id>: the waitlist offer this patient holds."""
    assert message.contact_id is not None
    offer = find_offer(session, message.contact_id, command.offer_id)
    if offer is None:
        if command.offer_id is not None:
            ctx.consumed = True  # a tap on someone else's (or no) offer: ignored
            log.warning(
                "waitlist claim for an offer of another contact ignored",
                extra={"message_id": str(message.id)},
            )
        else:
            ctx.notes["reply"] = "claim: no waitlist offer; left to triage"
        return
    if not message.sender_verified:
        _unverified_command(session, ctx, message, command, settings)
        return
    result = claim_offer(session, offer, message=message, settings=settings, now=now)
    ctx.after_commit.extend(result.after_commit)
    ctx.notes["reply"] = f"waitlist offer {result.offer_id}: {result.outcome}"
    ctx.consumed = True


def _reply_route(session: Session, message: Message, sms_only: bool) -> tuple[str, str] | None:
    """Answer on the channel the patient used (WhatsApp, Messenger, Instagram:
    inside the service window they just opened; a channel with an address of
    its own — a Telegram chat, a PSID, an IGSID — on itself, to the id that
    wrote), else SMS; email only where a template exists."""
    assert message.contact_id is not None
    own_kind = address_kind(message.channel) if is_channel(message.channel) else None
    if own_kind not in (None, IdentityKind.PHONE.value, IdentityKind.EMAIL.value):
        own = contact_address(session, message.contact_id, str(own_kind))
        if own:
            return message.channel, own
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
    CLAIM: "ficar com a vaga oferecida",
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
