"""What clinicq does by itself when a patient writes (first seed, steps 2-4).

`run_automations` is a reaction handler (shared/inbound/reactions.py), run for every
filed inbound message inside the reaction's transaction:

1. triage the text (shared/triage) and store it in `messages.triage`;
2. urgent (any grade above routine) → SMS to ONCALL_PHONE at once (any
   hour), naming the grade and the discriminator, and an email to
   EMAIL_MEDICO; `realert_unanswered_urgent` (called periodically by the
   scheduler) alerts again, once, when no agent replied in time;
3. a patient in danger gets a safety reply at once, on their channel,
   whatever the hour, instead of the acknowledgement: `emergency` → call SAMU
   192 / go to the nearest emergency service now (resposta_emergencia);
   self-harm → CVV 188 and SAMU 192 (resposta_crise). Once per message;
   otherwise the auto-acknowledgement on the patient's channel: email receipt
   confirmation, SMS with a link to follow, WhatsApp with an options menu;
4. a team alert by email routed by intent: prices → EMAIL_FINANCEIRO,
   clinical → EMAIL_MEDICO, the rest → EMAIL_SUPORTE;
5. hand the message to the agent inbox (its own task on the `inbox` queue,
   after commit — an inbox outage never blocks or loses this transaction).

Guards, and where each lives:
- at most once per conversation per AUTOMATION_WINDOW_HOURS (the on-call
  alert: once per grade, so an escalation alerts again): a row in
  `automation_runs` (unique (conversation, automation, window_key)); the
  conversation's advisory lock makes the sliding-window check and the insert
  atomic against a concurrent message of the same conversation;
- opted-out patients: `create_outbound_message` makes the row `skipped`;
- quiet hours (shared/scheduling/quiet_hours.py, CLINIC_TIMEZONE): acks and non-urgent
  alerts are not sent then (and not counted, so the first message after the
  quiet hours is acknowledged); urgent handling ignores quiet hours;
- command replies ("SIM", "SAIR") consumed by an earlier handler get no ack
  and no team alert;
- a redelivered reaction creates nothing twice: every outbound message has an
  idempotency key derived from the inbound message id;
- caps per sender / address and in all on on-call pages and acknowledgements
  (shared/inbound/automation_caps.py): a flood of form messages cannot page or mail
  without bound; a capped send is an `automation_capped` event instead.

Sends are enqueued through `ctx.after_commit` only (never before the rows
are durable).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, exists, func, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.orm import Session, aliased
from unidecode import unidecode

from shared.contacts.conversations import flag_needs_agent, refresh_last_inbound_triage
from shared.contacts.directory import contact_address
from shared.core.channels import address_kind, is_channel
from shared.core.config import Settings, get_settings
from shared.core.enums import Channel, ConversationStatus, Direction, IdentityKind, MessageStatus
from shared.core.models import AutomationRun, Contact, Conversation, Message, MessageEvent
from shared.core.taskqueue import (
    INBOX_LABELS,
    INBOX_POST_MESSAGE,
    INBOX_WIDGET_REPLY,
    send_task,
)
from shared.inbound.automation_caps import Cap, auto_ack_cap, oncall_page_cap
from shared.inbound.reactions import ReactionContext
from shared.outbound.create import OutboundRequest, create_outbound_message, enqueue_send
from shared.triage import CLINICAL_INTENTS, TriageResult, grade_label, reason_label, triage

log = logging.getLogger(__name__)

ONCALL_GRADES = ("urgent", "very_urgent", "emergency")
HISTORY_SIZE = 10
EXCERPT_CHARS = 90  # the on-call SMS stays within two segments
ALERT_TEXT_CHARS = 2000

ACK_TEMPLATES = {
    "email": "recebimento",
    "sms": "acompanhamento",
    "whatsapp": "menu_opcoes",
    "messenger": "menu_opcoes",
    "instagram": "menu_opcoes",
    "telegram": "recebimento",
}
EMERGENCY_REPLY = "resposta_emergencia"
CRISIS_REPLY = "resposta_crise"
SELF_HARM = "self_harm"
URGENT_ONCALL = "urgent_oncall"
URGENT_REALERT = "urgent_realert"
AGENT_REPLY_PURPOSE = "agent_reply"


@dataclass
class _Inbound:
    message: Message
    conversation: Conversation
    contact: Contact | None


# --- the reaction handler -----------------------------------------------------------


def run_automations(session: Session, ctx: ReactionContext) -> None:
    """The reaction handler. It shares the reaction's transaction with the
    handlers before it (command replies): a bug here must not undo their work,
    so it runs in a savepoint and its sends are published only if it
    succeeded. Database outages still propagate (the task retries)."""
    mine = ReactionContext(message_id=ctx.message_id, consumed=ctx.consumed, notes=ctx.notes)
    try:
        with session.begin_nested():
            _run_automations(session, mine)
    except (OperationalError, InterfaceError):
        raise
    except Exception:  # noqa: BLE001 - isolate the other handlers from our failures
        log.exception("automations failed; triage/automations skipped for this message",
                      extra={"message_id": str(ctx.message_id)})
        return
    ctx.after_commit.extend(mine.after_commit)


def _run_automations(session: Session, ctx: ReactionContext) -> None:
    settings = get_settings()
    inbound = _load_inbound(session, ctx.message_id)
    if inbound is None:
        return
    result = _triage_and_store(session, inbound, settings)
    ctx.notes["triage"] = result.to_dict()
    now = datetime.now(UTC)

    if settings.AUTOMATIONS_ENABLED:
        _lock_conversation(session, inbound.conversation.id)
        if result.urgent:
            flag_needs_agent(session, inbound.conversation, "urgent")
            _alert_oncall(session, ctx, inbound, result, settings, now)
        quiet = _quiet_hours(settings)
        safety_template = safety_reply_template(result) if settings.SAFETY_REPLIES_ENABLED else None
        if safety_template is not None:
            # Whatever the hour and whatever else the message was: the patient
            # must not be told to wait for opening hours.
            _safety_reply(session, ctx, inbound, safety_template, settings)
        if not ctx.consumed:
            if settings.AUTO_ACK_ENABLED and safety_template is not None:
                ctx.notes["auto_ack"] = "replaced by the safety reply"
            elif settings.AUTO_ACK_ENABLED:
                ack_quiet = quiet is not None and quiet.applies_to(
                    inbound.message.channel
                ) and quiet.is_quiet(now)
                if ack_quiet and not result.urgent:
                    ctx.notes["auto_ack"] = "skipped: quiet hours"
                else:
                    _acknowledge(session, ctx, inbound, settings, now)
            if settings.TEAM_ALERTS_ENABLED:
                email_quiet = quiet is not None and quiet.applies_to("email") and quiet.is_quiet(
                    now
                )
                if email_quiet and not result.urgent:
                    ctx.notes["team_alert"] = "skipped: quiet hours"
                else:
                    _alert_team(session, ctx, inbound, result, settings, now)

    if settings.INBOX_PROVIDER != "none" and inbound.message.channel == Channel.WEBCHAT.value:
        # Written in the inbox's own widget: already there, only the triage
        # labels go to its conversation (shared/inbox/webchat.py).
        conversation_id = str(inbound.conversation.id)
        ctx.after_commit.append(lambda: _enqueue_inbox_labels(conversation_id))
    elif settings.INBOX_PROVIDER != "none":
        message_id = str(inbound.message.id)
        ctx.after_commit.append(lambda: _enqueue_inbox_post(message_id))


def _enqueue_inbox_post(message_id: str) -> None:
    send_task(INBOX_POST_MESSAGE, [message_id], argsrepr=f"['{message_id}']")


def _enqueue_inbox_labels(conversation_id: str) -> None:
    send_task(INBOX_LABELS, [conversation_id], argsrepr=f"['{conversation_id}']")


def _load_inbound(session: Session, message_id: uuid.UUID) -> _Inbound | None:
    message = session.get(Message, message_id)
    if message is None or message.direction != Direction.INBOUND.value:
        return None
    if message.conversation_id is None:
        return None
    conversation = session.get(Conversation, message.conversation_id)
    if conversation is None:
        return None
    contact = session.get(Contact, message.contact_id) if message.contact_id else None
    return _Inbound(message, conversation, contact)


def _triage_and_store(session: Session, inbound: _Inbound, settings: Settings) -> TriageResult:
    newest_first = session.execute(
        select(Message.text, Message.triage)
        .where(
            Message.conversation_id == inbound.conversation.id,
            Message.direction == Direction.INBOUND.value,
            Message.id != inbound.message.id,
            Message.created_at <= inbound.message.created_at,
        )
        .order_by(Message.created_at.desc())
        .limit(HISTORY_SIZE)
    ).all()
    earlier = list(reversed(newest_first))
    texts = [row.text for row in earlier if row.text]
    rules_only = settings.model_copy(update={"ENABLE_AI_ANALYSIS": False})
    intents = [
        (row.triage or {}).get("intent") or triage(row.text or "", settings=rules_only).intent
        for row in earlier
    ]
    body = inbound.message.text or ""
    if inbound.message.subject and inbound.message.channel == "email":
        body = f"{inbound.message.subject}\n{body}"
    result = triage(body, history=texts, settings=settings, history_intents=intents)
    inbound.message.triage = result.to_dict()
    if inbound.message.conversation_id is not None:
        session.flush()  # the triage is in the row the refresh reads
        refresh_last_inbound_triage(session, [inbound.message.conversation_id])
    return result


def _lock_conversation(session: Session, conversation_id: uuid.UUID) -> None:
    session.execute(
        text("SELECT pg_advisory_xact_lock(hashtextextended(:k, 0))"),
        {"k": f"automations:{conversation_id}"},
    )


def _quiet_hours(settings: Settings) -> Any:
    from shared.scheduling.quiet_hours import QuietHours

    return QuietHours.from_settings(settings)


# --- the once-per-window guard --------------------------------------------------------


def _window(settings: Settings) -> timedelta:
    return timedelta(hours=settings.AUTOMATION_WINDOW_HOURS)


def _window_key(settings: Settings, now: datetime) -> str:
    seconds = int(_window(settings).total_seconds())
    return f"w{int(now.timestamp()) // seconds}"


def claim_automation(
    session: Session,
    conversation_id: uuid.UUID,
    automation: str,
    settings: Settings,
    now: datetime,
    blocked_by: tuple[str, ...] = (),
) -> int | None:
    """Take this conversation's run of `automation` for the current window.

    Returns the run id, or None when it (or one of `blocked_by`) already ran
    within the window. The
    sliding check covers a run in the previous bucket; the unique key covers
    two concurrent claims in the same bucket (the caller holds the
    conversation's advisory lock, so the two checks are one step)."""
    recent = session.scalar(
        select(AutomationRun.id).where(
            AutomationRun.conversation_id == conversation_id,
            AutomationRun.automation.in_([automation, *blocked_by]),
            AutomationRun.created_at > now - _window(settings),
        )
    )
    if recent is not None:
        return None
    return session.scalar(
        insert(AutomationRun)
        .values(
            conversation_id=conversation_id,
            automation=automation,
            window_key=_window_key(settings, now),
            created_at=now,
        )
        .on_conflict_do_nothing(constraint="uq_automation_run")
        .returning(AutomationRun.id)
    )


def _send_once(
    session: Session,
    ctx: ReactionContext,
    inbound: _Inbound,
    automation: str,
    req: OutboundRequest,
    settings: Settings,
    now: datetime,
    cap: Callable[[], Cap | None] | None = None,
    blocked_by: tuple[str, ...] = (),
) -> str:
    """Create the outbound message of `automation` unless it ran in the window
    (or `cap`, asked only for a send that would happen, says it is capped).

    A redelivered reaction finds its own message by idempotency key and
    enqueues it again if it is still queued (the send claims the row, so a
    second publish is harmless)."""
    assert req.idempotency_key
    existing = session.execute(
        select(Message.id, Message.status, Message.channel).where(
            Message.idempotency_key == req.idempotency_key
        )
    ).first()
    if existing is not None:
        if existing.status == MessageStatus.QUEUED.value:
            mid, channel = existing.id, existing.channel
            ctx.after_commit.append(lambda: enqueue_send(mid, channel))
        return "already created"
    run_id = claim_automation(
        session, inbound.conversation.id, automation, settings, now, blocked_by
    )
    if run_id is None:
        return "already ran in window"
    capped = cap() if cap is not None else None
    if capped is not None:
        # No run left behind: a later message may send once the cap frees
        # up, and an on-call run without its page would be re-alerted.
        session.execute(delete(AutomationRun).where(AutomationRun.id == run_id))
        return _record_capped(session, inbound, automation, capped)
    created = create_outbound_message(session, req)
    run = session.get(AutomationRun, run_id)
    if run is not None:
        run.message_id = created.message_id
    if created.should_enqueue:
        mid, channel = created.message_id, req.channel
        ctx.after_commit.append(lambda: enqueue_send(mid, channel))
    return created.status


def _record_capped(session: Session, inbound: _Inbound, automation: str, cap: Cap) -> str:
    """An event on the patient's message and a log line: ids and the cap only."""
    what = f"{automation}: {cap.describe()}"
    session.add(
        MessageEvent(message_id=inbound.message.id, event="automation_capped", detail=what)
    )
    log.warning(
        "automatic send capped",
        extra={"message_id": str(inbound.message.id), "automation": automation, "cap": cap.name},
    )
    return f"capped: {cap.describe()}"


# --- the automations ------------------------------------------------------------------


def _first_name(contact: Contact | None) -> str:
    if contact is None or not contact.name:
        return ""
    return contact.name.split()[0][:40]


def _follow_link(settings: Settings, message_id: uuid.UUID) -> str:
    if settings.AUTO_ACK_FOLLOW_URL:
        return settings.AUTO_ACK_FOLLOW_URL
    from shared.core.tokens import status_token

    base = settings.PUBLIC_BASE_URL.rstrip("/")
    token = status_token(settings.SECRET_KEY, str(message_id))
    return f"{base}/api/messages/{message_id}?token={token}"


def _acknowledge(
    session: Session, ctx: ReactionContext, inbound: _Inbound, settings: Settings, now: datetime
) -> None:
    channel = inbound.message.channel
    if channel == "web":  # the website form: confirm by email when we have one
        channel = "email"
    template = ACK_TEMPLATES.get(channel)
    if template is None:
        return
    kind = address_kind(channel)
    address = contact_address(session, inbound.message.contact_id, kind)
    if address is None:
        ctx.notes["auto_ack"] = f"skipped: no {kind} for the contact"
        return
    data: dict[str, Any] = {
        "clinica": settings.CLINIC_NAME,
        "paciente_nome": _first_name(inbound.contact),
    }
    if channel == "sms":
        data["link"] = _follow_link(settings, inbound.message.id)
    rendered = _render(channel, template, data)
    if rendered is None:
        ctx.notes["auto_ack"] = "skipped: template does not render"
        return
    req = OutboundRequest(
        channel=channel,
        to_address=address,
        contact_id=inbound.message.contact_id,
        conversation_id=inbound.conversation.id,
        text=rendered.text,
        subject=rendered.subject,
        template=template,
        template_data=data,
        purpose="auto_reply",
        idempotency_key=f"auto_ack:{inbound.message.id}",
        metadata={"automation": "auto_ack", "in_reply_to": str(inbound.message.id)},
    )
    ctx.notes["auto_ack"] = _send_once(
        session, ctx, inbound, "auto_ack", req, settings, now,
        cap=lambda: auto_ack_cap(settings, address),
    )


def safety_reply_template(result: TriageResult) -> str | None:
    """The reply a patient in danger gets instead of the acknowledgement."""
    if result.discriminator == SELF_HARM or SELF_HARM in result.urgency_reasons:
        return CRISIS_REPLY
    if result.urgency == "emergency":
        return EMERGENCY_REPLY
    return None


def _safety_reply(
    session: Session, ctx: ReactionContext, inbound: _Inbound, template: str, settings: Settings
) -> None:
    """Send `template` on the patient's channel, once per message (not once per
    window: every message of a patient in danger is answered), at any hour."""
    channel = inbound.message.channel
    address = None
    if channel == Channel.WEBCHAT.value:
        # The visitor is in the widget now: answered there, never at an
        # address they typed (unverified).
        _widget_reply(session, ctx, inbound, template, settings)
        return
    if channel == "web":  # the website form: by email when we have one, else SMS
        address = contact_address(session, inbound.message.contact_id, IdentityKind.EMAIL.value)
        channel = "email" if address is not None else "sms"
    if address is None and is_channel(channel):
        address = contact_address(session, inbound.message.contact_id, address_kind(channel))
    if address is None:
        ctx.notes["safety_reply"] = "skipped: no address on the patient's channel"
        log.warning("safety reply not sent: no address for the patient's channel",
                    extra={"message_id": str(inbound.message.id)})
        return
    data: dict[str, Any] = {
        "clinica": settings.CLINIC_NAME,
        "paciente_nome": _first_name(inbound.contact),
        "samu": settings.EMERGENCY_PHONE,
        "cvv": settings.CRISIS_LINE,
    }
    rendered = _render(channel, template, data)
    if rendered is None:
        ctx.notes["safety_reply"] = "skipped: template does not render"
        return
    key = f"safety_reply:{inbound.message.id}"
    existing = session.execute(
        select(Message.id, Message.status).where(Message.idempotency_key == key)
    ).first()
    if existing is not None:  # a redelivered reaction: publish again if still queued
        if existing.status == MessageStatus.QUEUED.value:
            mid = existing.id
            ctx.after_commit.append(lambda: enqueue_send(mid, channel))
        ctx.notes["safety_reply"] = "already created"
        return
    created = create_outbound_message(
        session,
        OutboundRequest(
            channel=channel,
            to_address=address,
            contact_id=inbound.message.contact_id,
            conversation_id=inbound.conversation.id,
            text=rendered.text,
            subject=rendered.subject,
            template=template,
            template_data=data,
            purpose="auto_reply",
            idempotency_key=key,
            metadata={"automation": template, "in_reply_to": str(inbound.message.id)},
            # The patient just wrote to us about a danger to their life: the
            # answer goes even to a contact who once opted out of messages.
            respect_opt_out=False,
        ),
    )
    if created.should_enqueue:
        mid = created.message_id
        ctx.after_commit.append(lambda: enqueue_send(mid, channel))
    ctx.notes["safety_reply"] = f"{template}: {created.status}"


def _widget_reply(
    session: Session, ctx: ReactionContext, inbound: _Inbound, template: str, settings: Settings
) -> None:
    """The safety reply posted into the website-widget conversation the
    visitor wrote in (task clinicq.inbox.widget_reply), once per message. The
    text is the SMS template's (plain text, like a chat line)."""
    conversation = inbound.conversation
    if not conversation.inbox_provider or not conversation.inbox_conversation_id:
        ctx.notes["safety_reply"] = "skipped: no widget conversation"
        return
    data: dict[str, Any] = {
        "clinica": settings.CLINIC_NAME,
        "paciente_nome": _first_name(inbound.contact),
        "samu": settings.EMERGENCY_PHONE,
        "cvv": settings.CRISIS_LINE,
    }
    rendered = _render("sms", template, data)
    if rendered is None:
        ctx.notes["safety_reply"] = "skipped: template does not render"
        return
    key = f"safety_reply:{inbound.message.id}"
    existing = session.execute(
        select(Message.id, Message.status).where(Message.idempotency_key == key)
    ).first()
    if existing is not None:
        if existing.status == MessageStatus.QUEUED.value:
            mid = str(existing.id)
            ctx.after_commit.append(lambda: _enqueue_widget_reply(mid))
        ctx.notes["safety_reply"] = "already created"
        return
    mid = str(uuid.uuid4())
    session.add(
        Message(
            id=uuid.UUID(mid),
            conversation_id=conversation.id,
            contact_id=inbound.message.contact_id,
            channel=Channel.WEBCHAT.value,
            direction=Direction.OUTBOUND.value,
            purpose="auto_reply",
            to_address=conversation.inbox_conversation_id,
            text=rendered.text,
            template=template,
            status=MessageStatus.QUEUED.value,
            provider=conversation.inbox_provider,
            idempotency_key=key,
            metadata_={"automation": template, "in_reply_to": str(inbound.message.id)},
        )
    )
    session.flush()
    session.add(MessageEvent(message_id=uuid.UUID(mid), event="created",
                             status_to=MessageStatus.QUEUED.value))
    ctx.after_commit.append(lambda: _enqueue_widget_reply(mid))
    ctx.notes["safety_reply"] = f"{template}: queued in the widget"


def _enqueue_widget_reply(message_id: str) -> None:
    send_task(INBOX_WIDGET_REPLY, [message_id], argsrepr=f"['{message_id}']")


def team_for(result: TriageResult) -> str:
    """Which team hears about a message: 'medico', 'financeiro' or 'suporte'."""
    if result.urgent or result.intent in CLINICAL_INTENTS:
        return "medico"
    if result.intent == "preco":
        return "financeiro"
    return "suporte"


def _team_address(settings: Settings, team: str) -> str:
    return {
        "medico": settings.EMAIL_MEDICO,
        "financeiro": settings.EMAIL_FINANCEIRO,
        "suporte": settings.EMAIL_SUPORTE,
    }[team]


def _alert_team(
    session: Session,
    ctx: ReactionContext,
    inbound: _Inbound,
    result: TriageResult,
    settings: Settings,
    now: datetime,
) -> None:
    team = team_for(result)
    address = _team_address(settings, team)
    if not address:
        ctx.notes["team_alert"] = f"skipped: no address for {team}"
        return
    data = {
        "clinica": settings.CLINIC_NAME,
        "paciente_nome": (inbound.contact.name if inbound.contact else None) or "?",
        "canal": inbound.message.channel,
        "intencao": result.intent,
        "sentimento": result.sentiment,
        "lead": result.lead_score,
        "urgente": result.urgent,
        "grau": grade_label(result.urgency),
        "motivo": reason_label(result.discriminator),
        "motivos": ", ".join(reason_label(r) for r in result.urgency_reasons),
        "texto": (inbound.message.text or "")[:ALERT_TEXT_CHARS],
    }
    rendered = _render("email", "alerta_equipe", data)
    if rendered is None:
        return
    req = OutboundRequest(
        channel="email",
        to_address=address,
        conversation_id=inbound.conversation.id,
        text=rendered.text,
        subject=rendered.subject,
        template="alerta_equipe",
        template_data=data,
        purpose="alert",
        subject_contact_id=inbound.message.contact_id,
        idempotency_key=f"team_alert:{team}:{inbound.message.id}",
        metadata={"automation": f"team_alert_{team}", "in_reply_to": str(inbound.message.id)},
        respect_opt_out=False,
    )
    # Once per team per window: a patient asking a price and then a clinical
    # question reaches both teams, but ten price questions reach finance once.
    automation = f"team_alert_{team}" + ("_urgent" if result.urgent else "")
    ctx.notes["team_alert"] = _send_once(session, ctx, inbound, automation, req, settings, now)


def _excerpt(message_text: str | None) -> str:
    flat = " ".join((message_text or "").split())
    return flat if len(flat) <= EXCERPT_CHARS else flat[: EXCERPT_CHARS - 1] + "…"


def _alert_oncall(
    session: Session,
    ctx: ReactionContext,
    inbound: _Inbound,
    result: TriageResult,
    settings: Settings,
    now: datetime,
) -> None:
    if not settings.ONCALL_PHONE:
        ctx.notes["oncall"] = "skipped: ONCALL_PHONE not set"
        log.warning(
            "urgent message but ONCALL_PHONE is not set",
            extra={"message_id": str(inbound.message.id)},
        )
        return
    data = {
        "clinica": settings.CLINIC_NAME,
        "paciente_nome": _first_name(inbound.contact) or "paciente",
        "canal": inbound.message.channel,
        # ASCII keeps the SMS in the GSM alphabet (160-character segments).
        "grau": unidecode(grade_label(result.urgency)),
        "motivo": unidecode(reason_label(result.discriminator)),
        "trecho": _excerpt(inbound.message.text),
    }
    rendered = _render("sms", "alerta_urgente", data)
    if rendered is None:
        return
    grade = result.urgency if result.urgency in ONCALL_GRADES else "urgent"
    req = OutboundRequest(
        channel="sms",
        to_address=settings.ONCALL_PHONE,
        conversation_id=inbound.conversation.id,
        text=rendered.text,
        template="alerta_urgente",
        template_data=data,
        purpose="alert",
        subject_contact_id=inbound.message.contact_id,
        idempotency_key=f"{URGENT_ONCALL}:{inbound.message.id}",
        metadata={
            "automation": URGENT_ONCALL,
            "in_reply_to": str(inbound.message.id),
            **oncall_failover(settings),
        },
        respect_opt_out=False,
    )
    sender = inbound.message.contact_id or inbound.conversation.id
    # Once per window, unless the grade rises: a conversation alerted as
    # `urgent` that turns `emergency` alerts the on-call again; the reverse not.
    higher = tuple(oncall_automation(g) for g in ONCALL_GRADES[ONCALL_GRADES.index(grade):])
    ctx.notes["oncall"] = _send_once(
        session, ctx, inbound, higher[0], req, settings, now, blocked_by=higher[1:],
        cap=lambda: oncall_page_cap(settings, sender),
    )


def oncall_failover(settings: Settings) -> dict[str, Any]:
    """The on-call SMS's failover chain (ONCALL_ALERT_FALLBACK), carried in
    its metadata for scheduler/failover.py; nothing without one."""
    chain = settings.oncall_fallback_chain
    return {"failover_channels": list(chain)} if chain else {}


def oncall_automation(grade: str) -> str:
    """The automation name of the on-call alert for a grade (the guard's key)."""
    return URGENT_ONCALL if grade == "urgent" else f"{URGENT_ONCALL}_{grade}"


def _render(channel: str, template: str, data: dict[str, Any]) -> Any:
    from shared.core.templating import TemplateError, render

    try:
        return render(channel, template, data)
    except TemplateError as exc:
        # A broken template file must not lose the triage or the other
        # automations; ops see the error in the logs.
        log.error(
            "automation template does not render",
            extra={"template": template, "error": str(exc)},
        )
        return None


# --- re-alert (called periodically by the scheduler) -------------------------------


def realert_unanswered_urgent(now: datetime | None = None, settings: Settings | None = None) -> int:
    """Alert ONCALL_PHONE again for urgent alerts nobody answered in time.

    "Answered" means an agent's reply (purpose agent_reply) went to the
    conversation after the alert, or the conversation was closed. Each alert
    is re-sent at most once (the run's unique key `after:<alert run id>`).
    Returns how many re-alerts were created.
    """
    from shared.core.db import session_scope

    settings = settings or get_settings()
    now = now or datetime.now(UTC)
    if not settings.ONCALL_PHONE or not settings.AUTOMATIONS_ENABLED:
        return 0
    due_before = now - timedelta(minutes=settings.URGENT_REALERT_MINUTES)
    oldest = now - timedelta(days=1)  # a day-old alert is not news to the on-call
    answered = exists().where(
        Message.conversation_id == AutomationRun.conversation_id,
        Message.direction == Direction.OUTBOUND.value,
        Message.purpose == AGENT_REPLY_PURPOSE,
        Message.created_at > AutomationRun.created_at,
    )
    later = aliased(AutomationRun)
    realerted = exists().where(
        later.conversation_id == AutomationRun.conversation_id,
        later.automation == URGENT_REALERT,
        later.window_key == func.concat("after:", AutomationRun.id),
    )
    after_commit: list[Any] = []
    created_count = 0
    with session_scope() as session:
        rows = session.execute(
            select(AutomationRun.id, AutomationRun.conversation_id, AutomationRun.message_id)
            .join(Conversation, Conversation.id == AutomationRun.conversation_id)
            .where(
                AutomationRun.automation.in_([oncall_automation(g) for g in ONCALL_GRADES]),
                AutomationRun.created_at <= due_before,
                AutomationRun.created_at > oldest,
                Conversation.status == ConversationStatus.ACTIVE.value,
                ~answered,
                ~realerted,
            )
            .order_by(AutomationRun.created_at)
            .limit(100)
        ).all()
        for row in rows:
            if _realert_one(session, row, settings, now, after_commit):
                created_count += 1
    for action in after_commit:
        action()
    return created_count


def _realert_one(
    session: Session, row: Any, settings: Settings, now: datetime, after_commit: list[Any]
) -> bool:
    alert = session.get(Message, row.message_id) if row.message_id else None
    in_reply_to = (alert.metadata_ or {}).get("in_reply_to") if alert is not None else None
    patient_message = session.get(Message, uuid.UUID(in_reply_to)) if in_reply_to else None
    contact = (
        session.get(Contact, patient_message.contact_id)
        if patient_message is not None and patient_message.contact_id
        else None
    )
    inserted = session.scalar(
        insert(AutomationRun)
        .values(
            conversation_id=row.conversation_id,
            automation=URGENT_REALERT,
            window_key=f"after:{row.id}",
            created_at=now,
        )
        .on_conflict_do_nothing(constraint="uq_automation_run")
        .returning(AutomationRun.id)
    )
    if inserted is None:  # a concurrent scheduler took it
        return False
    minutes = int((now - (alert.created_at if alert is not None else now)).total_seconds() // 60)
    data = {
        "clinica": settings.CLINIC_NAME,
        "paciente_nome": _first_name(contact) or "paciente",
        "canal": patient_message.channel if patient_message is not None else "?",
        "minutos": max(minutes, int(settings.URGENT_REALERT_MINUTES)),
        "trecho": _excerpt(patient_message.text if patient_message is not None else ""),
    }
    rendered = _render("sms", "realerta_urgente", data)
    if rendered is None:
        return False
    created = create_outbound_message(
        session,
        OutboundRequest(
            channel="sms",
            to_address=settings.ONCALL_PHONE,
            conversation_id=row.conversation_id,
            text=rendered.text,
            template="realerta_urgente",
            template_data=data,
            purpose="alert",
            subject_contact_id=patient_message.contact_id if patient_message is not None else None,
            idempotency_key=f"{URGENT_REALERT}:{row.id}",
            metadata={
                "automation": URGENT_REALERT,
                "alert_run": row.id,
                **oncall_failover(settings),
            },
            respect_opt_out=False,
        ),
    )
    run = session.get(AutomationRun, inserted)
    if run is not None:
        run.message_id = created.message_id
    if created.should_enqueue:
        mid = created.message_id
        after_commit.append(lambda: enqueue_send(mid, "sms"))
    return created.created
