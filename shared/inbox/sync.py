"""The bridge's flows between our conversations and the agent inbox.

Patient → inbox (`post_patient_message`, task clinicq.inbox.post_message), in
steps, each in its own transaction under the conversation's advisory lock
(posts of one conversation are serialized, so one remote conversation is
created) and each recorded as soon as it succeeded, so a retry after an
outage resumes where it stopped instead of starting over:
1. the contact's random inbox token (contacts.inbox_token), made once;
2. the remote contact (contact_identities kind chatwoot|rocketchat);
3. the remote conversation (conversations.inbox_conversation_id);
4. the message, posted as the patient's, and recorded in `processed_events`
   (source `<inbox>:posted`) in the same transaction, so a retried task does
   not post it twice. A conversation deleted or closed on the inbox side is
   forgotten (committed) and step 3 opens a new one;
5. the triage labels — after the post, never undoing it: an inbox outage
   hands them to their own retried task (clinicq.inbox.labels), a refusal is
   logged, and the next message of the conversation sets them again anyway.
InboxUnavailable in steps 2-4 makes the task retry with backoff: our database
is the source of truth, so nothing is lost while the inbox is down.

Agent → patient (`handle_inbox_event`, task clinicq.inbox.event): the event id
(Chatwoot message id / Rocket.Chat message _id) goes into `processed_events`
in the same transaction as the outbound message, so a duplicate webhook
delivery changes nothing. The reply goes out on the conversation's channel
through `create_outbound_message`. WhatsApp outside the customer-service
window (conversations.last_inbound_at + WHATSAPP_SERVICE_WINDOW_HOURS) cannot
carry free text: the reply goes as the approved template
INBOX_WHATSAPP_REPLY_TEMPLATE when whatsapp/templates.json declares it,
otherwise by SMS — and the agent gets a note saying which.
"""

from __future__ import annotations

import logging
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from shared.contacts.conversations import is_widget_conversation
from shared.contacts.directory import contact_address
from shared.core.channels import address_kind
from shared.core.config import Settings, get_settings
from shared.core.db import session_scope
from shared.core.enums import (
    Channel,
    ConversationStatus,
    Direction,
    IdentityKind,
    MessageStatus,
)
from shared.core.models import Contact, ContactIdentity, Conversation, Message, ProcessedEvent
from shared.core.taskqueue import INBOX_LABELS, INBOX_NOTE, send_task
from shared.inbox import bridge_for
from shared.inbox.base import (
    InboxBridge,
    InboxEvent,
    InboxRejected,
    InboxUnavailable,
    PatientView,
    RemoteGone,
)
from shared.outbound.create import OutboundRequest, create_outbound_message, enqueue_send
from shared.outbound.messaging_window import META_DM_CHANNELS, last_inbound_at
from shared.outbound.messaging_window import decide as decide_window

log = logging.getLogger(__name__)

AGENT_REPLY_PURPOSE = "agent_reply"  # shared.inbound.automations reads it for re-alerts


def _lock(session: Session, key: str) -> None:
    session.execute(text("SELECT pg_advisory_xact_lock(hashtextextended(:k, 0))"), {"k": key})


def _mark_processed(session: Session, source: str, event_id: str) -> bool:
    """True the first time (source, event_id) is seen."""
    return (
        session.scalar(
            insert(ProcessedEvent)
            .values(source=source, event_id=event_id[:255])
            .on_conflict_do_nothing()
            .returning(ProcessedEvent.event_id)
        )
        is not None
    )


def conversation_labels(session: Session, conversation_id: uuid.UUID) -> list[str]:
    """Triage labels for the whole conversation: every intent asked, urgency
    ("urgente", plus its grade "urgencia-<grade>" and each discriminator that
    fired "sinal-<discriminator>"), the latest lead score and the channel."""
    rows = session.execute(
        select(Message.triage, Message.channel)
        .where(
            Message.conversation_id == conversation_id,
            Message.direction == Direction.INBOUND.value,
        )
        .order_by(Message.created_at)
    ).all()
    labels: list[str] = []
    lead = None
    for row in rows:
        triage = row.triage or {}
        intent = triage.get("intent")
        if intent and intent not in labels:
            labels.append(intent)
        if triage.get("urgent") and "urgente" not in labels:
            labels.append("urgente")
        for label in _urgency_labels(triage):
            if label not in labels:
                labels.append(label)
        lead = triage.get("lead_score") or lead
    if lead:
        labels.append(f"lead-{lead}")
    if rows:
        labels.append(f"canal-{rows[-1].channel}")
    return labels


def _urgency_labels(triage: dict) -> list[str]:
    if not triage.get("urgent"):
        return []
    labels = [f"urgencia-{triage['urgency']}"] if triage.get("urgency") else []
    reasons = triage.get("urgency_reasons") or []
    if triage.get("discriminator") and triage["discriminator"] not in reasons:
        reasons = [triage["discriminator"], *reasons]
    return labels + [f"sinal-{reason}" for reason in reasons]


# --- patient → inbox -------------------------------------------------------------------


def post_patient_message(message_id: str, settings: Settings | None = None) -> str:
    settings = settings or get_settings()
    bridge = bridge_for(settings)
    if bridge is None:
        return "inbox disabled"
    mid = uuid.UUID(message_id)
    posted_source = f"{bridge.name}:posted"
    with session_scope() as session:
        message = session.get(Message, mid)
        if message is None or message.direction != Direction.INBOUND.value:
            return "no such inbound message"
        if message.conversation_id is None or message.contact_id is None:
            return "message has no conversation"
        if message.channel == Channel.WEBCHAT.value:
            # Written in the inbox's own widget: already there (no echo loop).
            return "webchat: already in the inbox"
        if session.get(ProcessedEvent, (posted_source, message_id)) is not None:
            return "already posted"
        conversation_id, contact_id = message.conversation_id, message.contact_id
        contact = session.get(Contact, contact_id)
        patient = PatientView(
            message_id=message_id,
            contact_id=str(contact_id),
            contact_name=(contact.name if contact else None) or "",
            phone=contact_address(session, contact_id, IdentityKind.PHONE.value),
            email=contact_address(session, contact_id, IdentityKind.EMAIL.value),
            channel=message.channel,
            text=_content(message),
        )
    lock = f"inbox:{conversation_id}"
    patient.inbox_token = _inbox_token(contact_id)
    remote_contact = _remote_contact(bridge, patient, contact_id, lock)
    for _ in range(2):
        remote_conversation = _remote_conversation(
            bridge, patient, remote_contact, conversation_id, lock
        )
        try:
            if not _post(bridge, patient, remote_contact, remote_conversation, lock):
                return "already posted"
            break
        except RemoteGone:
            # Deleted or closed on the inbox side while ours stayed active: the
            # patient wrote again, so agents get a new conversation.
            _forget_conversation(conversation_id, bridge.name, remote_conversation, lock)
    else:
        raise InboxUnavailable(f"{bridge.name}: new conversation gone at once")
    log.info("patient message posted to the inbox", extra={"message_id": message_id,
                                                           "inbox": bridge.name})
    try:
        sync_labels(str(conversation_id), settings)
    except InboxUnavailable as exc:
        log.warning("inbox labels not set; retried on their own",
                    extra={"inbox": bridge.name, "error": str(exc)})
        _enqueue_labels(str(conversation_id))
    return "posted"


def _inbox_token(contact_id: uuid.UUID) -> str:
    """The contact's random inbox token, made (and committed) on first use so
    every retry presents the same one."""
    with session_scope() as session:
        token = session.scalar(
            update(Contact)
            .where(Contact.id == contact_id)
            .values(inbox_token=func.coalesce(Contact.inbox_token, secrets.token_urlsafe(24)))
            .returning(Contact.inbox_token)
        )
    if token is None:
        raise RuntimeError("contact vanished while posting to the inbox")
    return str(token)


def _remote_contact(
    bridge: InboxBridge, patient: PatientView, contact_id: uuid.UUID, lock: str
) -> str:
    with session_scope() as session:
        _lock(session, lock)
        known = contact_address(session, contact_id, bridge.name)
        remote = bridge.ensure_contact(patient, known)
        if remote != known:
            session.execute(
                insert(ContactIdentity)
                .values(
                    contact_id=contact_id,
                    kind=bridge.name,
                    value=remote,
                    # Our own inbox's id for this contact, not a patient's claim.
                    verified_at=func.now(),
                    verified_via=bridge.name,
                )
                .on_conflict_do_nothing(index_elements=["kind", "value"])
            )
    return remote


def _remote_conversation(
    bridge: InboxBridge,
    patient: PatientView,
    remote_contact: str,
    conversation_id: uuid.UUID,
    lock: str,
) -> str:
    with session_scope() as session:
        _lock(session, lock)
        conversation = session.get(Conversation, conversation_id)
        assert conversation is not None
        if (
            conversation.inbox_provider == bridge.name
            and conversation.inbox_conversation_id
            # A website-widget conversation is the visitor's screen: a message
            # from another channel goes to a conversation of the bridge's own.
            and not is_widget_conversation(session, conversation_id, bridge.name,
                                           conversation.inbox_conversation_id)
        ):
            return conversation.inbox_conversation_id
        remote = bridge.ensure_conversation(patient, remote_contact, None)
        conversation.inbox_provider = bridge.name
        conversation.inbox_conversation_id = remote
    return remote


def _post(
    bridge: InboxBridge,
    patient: PatientView,
    remote_contact: str,
    remote_conversation: str,
    lock: str,
) -> bool:
    """Post the message and mark it posted, together; False if it already was."""
    with session_scope() as session:
        _lock(session, lock)
        if not _mark_processed(session, f"{bridge.name}:posted", patient.message_id):
            return False
        bridge.post_incoming(patient, remote_contact, remote_conversation)
    return True


def _forget_conversation(
    conversation_id: uuid.UUID, provider: str, remote_conversation: str, lock: str
) -> None:
    with session_scope() as session:
        _lock(session, lock)
        session.execute(
            update(Conversation)
            .where(
                Conversation.id == conversation_id,
                Conversation.inbox_provider == provider,
                Conversation.inbox_conversation_id == remote_conversation,
            )
            .values(inbox_conversation_id=None)
        )


def sync_labels(conversation_id: str, settings: Settings | None = None) -> str:
    """Set the conversation's triage labels in the inbox (task
    clinicq.inbox.labels when the first try met an outage)."""
    settings = settings or get_settings()
    cid = uuid.UUID(conversation_id)
    with session_scope() as session:
        _lock(session, f"inbox:{cid}")
        conversation = session.get(Conversation, cid)
        if conversation is None or not conversation.inbox_provider:
            return "no inbox conversation"
        bridge = bridge_for(settings, conversation.inbox_provider)
        remote_conversation = conversation.inbox_conversation_id
        # A website-widget visitor has no contact the bridge made ("").
        remote_contact = contact_address(session, conversation.contact_id,
                                         conversation.inbox_provider) or ""
        if bridge is None or not remote_conversation:
            return "no inbox conversation"
        labels = conversation_labels(session, cid)
        if not labels:
            return "no labels"
        try:
            bridge.set_labels(remote_conversation, remote_contact, labels)
        except (InboxRejected, RemoteGone) as exc:
            # Labels are a convenience; a refusal must not hold anything back.
            log.warning("inbox refused the labels",
                        extra={"inbox": bridge.name, "error": str(exc)})
            return "labels refused"
    return "labels set"


def _enqueue_labels(conversation_id: str) -> None:
    try:
        send_task(INBOX_LABELS, [conversation_id])
    except Exception:  # noqa: BLE001 - best effort: the next message sets them again
        log.warning("could not enqueue the labels retry", extra={"conversation": conversation_id})


def _content(message: Message) -> str:
    body = message.text or ""
    if message.channel == "email" and message.subject:
        body = f"[{message.subject}]\n{body}"
    return body or "(mensagem sem texto)"


# --- inbox → patient ---------------------------------------------------------------------


@dataclass
class _Route:
    channel: str | None
    to_address: str | None
    template: str | None = None
    note: str | None = None


def _window_open(conversation: Conversation, settings: Settings, now: datetime) -> bool:
    """The same rule the delivery engine applies at send time
    (shared.outbound.delivery.in_service_window: the contact's *active* conversation),
    so a reply we route as free text is not refused there."""
    if conversation.status != ConversationStatus.ACTIVE.value:
        return False
    hours = settings.WHATSAPP_SERVICE_WINDOW_HOURS
    last = conversation.last_inbound_at
    return last is not None and now - last < timedelta(hours=hours)


def _approved_template(name: str, settings: Settings) -> bool:
    """Declared in whatsapp/templates.json, and — when WhatsApp goes through
    Twilio with credentials — mapped to a Content SID (TWILIO_CONTENT_SIDS),
    which is what the Twilio provider sends outside the window."""
    from shared.core.templating import UnknownTemplate, whatsapp_template
    from shared.providers import provider_name_for

    if not name:
        return False
    try:
        whatsapp_template(name)
    except UnknownTemplate:
        return False
    if provider_name_for("whatsapp", settings) == "twilio_whatsapp":
        return name in settings.twilio_content_sids
    return True


def choose_route(
    session: Session, conversation: Conversation, settings: Settings, now: datetime
) -> _Route:
    """Where an agent's reply goes, and what the agent should be told."""
    if conversation.channel in META_DM_CHANNELS:
        return _meta_dm_route(session, conversation, settings, now)
    addresses = {
        kind: contact_address(session, conversation.contact_id, kind)
        for kind in (IdentityKind.PHONE.value, IdentityKind.EMAIL.value)
    }

    def address_on(channel: str) -> str | None:
        return addresses[address_kind(channel)]

    channel = conversation.channel
    if channel == "telegram":
        # The patient's chat with the bot: no service window, no template.
        chat = contact_address(session, conversation.contact_id, IdentityKind.TELEGRAM.value)
        if chat is not None:
            return _Route("telegram", chat)
        channel = "sms"
    if channel == "web":
        channel = "email" if address_on("email") else "sms"
    if channel == "email":
        if address_on("email"):
            return _Route("email", address_on("email"))
        channel = "sms"
    if channel == "whatsapp":
        if address_on("whatsapp") is None:
            return _Route(None, None, note="Resposta NÃO enviada: paciente sem telefone.")
        if _window_open(conversation, settings, now):
            return _Route("whatsapp", address_on("whatsapp"))
        template = settings.INBOX_WHATSAPP_REPLY_TEMPLATE
        if _approved_template(template, settings):
            return _Route(
                "whatsapp", address_on("whatsapp"), template=template,
                note=("Fora da janela de 24 h do WhatsApp: a resposta foi enviada como "
                      f"modelo aprovado ({template})."),
            )
        return _Route(
            "sms", address_on("sms"),
            note="Fora da janela de 24 h do WhatsApp: a resposta foi enviada por SMS.",
        )
    if address_on("sms") is None:
        return _Route(None, None, note="Resposta NÃO enviada: paciente sem telefone ou email.")
    return _Route("sms", address_on("sms"))


def _meta_dm_route(
    session: Session, conversation: Conversation, settings: Settings, now: datetime
) -> _Route:
    """Messenger / Instagram: back to the id that wrote, within Meta's windows
    (24 h standard; an agent's reply up to 7 days with the HUMAN_AGENT tag,
    the same rule delivery applies: shared/outbound/messaging_window.py);
    after that by SMS, else e-mail, and the agent is told which."""
    channel = conversation.channel
    label = "Messenger" if channel == "messenger" else "Instagram"
    own = contact_address(session, conversation.contact_id, address_kind(channel))
    if own:
        decision = decide_window(
            channel, last_inbound_at(session, conversation.contact_id, channel),
            AGENT_REPLY_PURPOSE, settings, now,
        )
        if decision.allowed:
            note = None if decision.tag is None else (
                f"Fora da janela de 24 h do {label}: a resposta foi enviada como mensagem "
                "de atendente (HUMAN_AGENT, até 7 dias após a última mensagem do paciente)."
            )
            return _Route(channel, own, note=note)
    why = (f"Fora da janela de mensagens do {label}" if own
           else f"Paciente sem identificador do {label}")
    phone = contact_address(session, conversation.contact_id, IdentityKind.PHONE.value)
    if phone:
        return _Route("sms", phone, note=f"{why}: a resposta foi enviada por SMS.")
    email = contact_address(session, conversation.contact_id, IdentityKind.EMAIL.value)
    if email:
        return _Route("email", email, note=f"{why}: a resposta foi enviada por email.")
    return _Route(None, None, note=f"Resposta NÃO enviada: {why} e sem telefone ou email.")


def handle_inbox_event(doc: dict[str, Any], settings: Settings | None = None) -> str:
    settings = settings or get_settings()
    event = InboxEvent.from_dict(doc)
    if event.kind == "agent_message":
        return send_agent_reply(event, settings)
    if event.kind == "conversation_closed":
        return close_conversation(event)
    return f"ignored event kind {event.kind!r}"


def _find_conversation(session: Session, event: InboxEvent) -> Conversation | None:
    return session.scalar(
        select(Conversation)
        .where(
            Conversation.inbox_provider == event.provider,
            Conversation.inbox_conversation_id == event.inbox_conversation_id,
        )
        .order_by(Conversation.created_at.desc())
        .limit(1)
    )


def send_agent_reply(event: InboxEvent, settings: Settings) -> str:
    now = datetime.now(UTC)
    after_commit = []
    with session_scope() as session:
        if not _mark_processed(session, f"{event.provider}:message", event.event_id):
            return "duplicate"
        conversation = _find_conversation(session, event)
        if conversation is None:
            log.warning("agent reply for an unknown inbox conversation",
                        extra={"inbox": event.provider})
            return "unknown conversation"
        if event.widget or is_widget_conversation(
            session, conversation.id, event.provider, event.inbox_conversation_id
        ):
            # The visitor read it in the widget: nothing to send, anywhere.
            if _our_widget_post(session, conversation.id, event.text, now):
                # The webhook echo of our own post (a safety reply) that beat
                # the recording of its id: not an agent's answer.
                return "our own widget post"
            conversation.assignee = event.agent or conversation.assignee
            conversation.needs_agent = False
            conversation.last_message_at = now
            log.info("agent reply in a website-widget conversation: answered there",
                     extra={"inbox": event.provider})
            return "answered in the widget"
        contact = session.get(Contact, conversation.contact_id)
        route = choose_route(session, conversation, settings, now)
        status = "not sent"
        if event.attachments:
            # Files would need fetching from the inbox and a media send per
            # channel; until then the agent is told instead of the patient
            # silently missing them.
            attachment_note = ("Anexos NÃO são enviados ao paciente pelo clinicq; "
                               "descreva o conteúdo ou envie um link.")
            if event.text:
                route.note = " ".join(filter(None, [route.note, attachment_note]))
            else:
                route = _Route(None, None, note=attachment_note)
        if route.channel is not None and route.to_address is not None:
            req = OutboundRequest(
                channel=route.channel,
                to_address=route.to_address,
                contact_id=conversation.contact_id,
                conversation_id=conversation.id,
                text=event.text,
                purpose=AGENT_REPLY_PURPOSE,
                idempotency_key=f"{event.provider}:reply:{event.event_id}",
                metadata={"inbox": event.provider, "inbox_message_id": event.event_id,
                          "inbox_conversation_id": event.inbox_conversation_id,
                          "agent": event.agent},
            )
            if route.channel == "email":
                req.subject = f"{settings.CLINIC_NAME}: resposta à sua mensagem"
            if route.template:
                req.template = route.template
                req.template_data = {
                    "paciente_nome": ((contact.name if contact else None) or "").split(" ")[0]
                    or "paciente",
                    "resposta": event.text,
                }
            created = create_outbound_message(session, req)
            status = created.status
            if created.should_enqueue:
                mid, channel = created.message_id, route.channel
                after_commit.append(lambda: enqueue_send(mid, channel))
            if created.status == MessageStatus.SKIPPED.value:
                route.note = (f"Resposta NÃO enviada: o paciente pediu para não receber "
                              f"mensagens por {route.channel} ({created.reason}).")
        conversation.assignee = event.agent or conversation.assignee
        conversation.needs_agent = False
        conversation.last_message_at = now
        if route.note:
            note_args = [event.provider, event.inbox_conversation_id, route.note]
            after_commit.append(lambda: _enqueue_note(*note_args))
    for action in after_commit:
        action()
    log.info("agent reply handled", extra={"inbox": event.provider, "status": status})
    return status


def _our_widget_post(
    session: Session, conversation_id: uuid.UUID, text: str, now: datetime
) -> bool:
    """clinicq posted this very text into the conversation's widget lately."""
    return (
        session.scalar(
            select(Message.id)
            .where(
                Message.conversation_id == conversation_id,
                Message.channel == Channel.WEBCHAT.value,
                Message.direction == Direction.OUTBOUND.value,
                Message.text == text,
                Message.created_at > now - timedelta(hours=1),
            )
            .limit(1)
        )
        is not None
    )


def _enqueue_note(provider: str, remote_conversation: str, note: str) -> None:
    send_task(INBOX_NOTE, [provider, remote_conversation, note],
              argsrepr=f"['{provider}', '{remote_conversation}', '<note>']")


def close_conversation(event: InboxEvent) -> str:
    with session_scope() as session:
        closed = session.scalars(
            update(Conversation)
            .where(
                Conversation.inbox_provider == event.provider,
                Conversation.inbox_conversation_id == event.inbox_conversation_id,
                Conversation.status == ConversationStatus.ACTIVE.value,
            )
            .values(status=ConversationStatus.CLOSED.value, closed_at=datetime.now(UTC),
                    needs_agent=False)
            .returning(Conversation.id)
        ).all()
    return "closed" if closed else "nothing to close"


def post_private_note(provider: str, remote_conversation: str, note: str,
                      settings: Settings | None = None) -> str:
    bridge = bridge_for(settings or get_settings(), provider)
    if bridge is None:
        return "inbox disabled"
    bridge.post_note(remote_conversation, note)
    return "posted"


def report_failed_agent_replies(
    settings: Settings | None = None, now: datetime | None = None
) -> int:
    """Tell agents when a reply they wrote did not reach the patient.

    Periodic (the scheduler's maintenance jobs): every agent reply of the
    last day that ended `failed` gets one note in its inbox conversation
    (once: `processed_events` source `<inbox>:failure-noted`). Returns how
    many notes were enqueued."""
    settings = settings or get_settings()
    now = now or datetime.now(UTC)
    notes: list[tuple[str, str, str]] = []
    with session_scope() as session:
        failed = session.execute(
            select(Message.id, Message.channel, Message.error_code, Message.metadata_)
            .where(
                Message.purpose == AGENT_REPLY_PURPOSE,
                Message.status == MessageStatus.FAILED.value,
                Message.updated_at > now - timedelta(days=1),
            )
            .order_by(Message.updated_at)
            .limit(200)
        ).all()
        for row in failed:
            meta = row.metadata_ or {}
            provider = meta.get("inbox")
            remote = meta.get("inbox_conversation_id")
            if not provider or not remote:
                continue
            if not _mark_processed(session, f"{provider}:failure-noted", str(row.id)):
                continue
            code = f" (erro {row.error_code})" if row.error_code else ""
            notes.append((provider, str(remote),
                          f"Resposta NÃO entregue ao paciente por {row.channel}{code}."))
    for provider, remote, note in notes:
        _enqueue_note(provider, remote, note)
    return len(notes)
