"""The console's conversations: the filtered list (and its CSV), search by
name / phone / e-mail, a conversation's timeline with delivery states and
costs, and a reply from the console through the normal send path.

Clinical content (shown to admin and clinical roles only): the triage's
discriminator and urgency reasons of a message, and an appointment's notes.
The front desk sees the message text (it answers the patient), the intent and
the urgency grade (it must know to escalate), not the clinical why.
"""

from __future__ import annotations

import csv
import io
import re
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from shared.console.audit import audit, audit_view
from shared.core.config import Settings
from shared.core.enums import MessageStatus
from shared.core.errors import FieldError, NotFoundError
from shared.core.identity import InvalidIdentifier, normalize_email, normalize_phone
from shared.core.models import Contact, Conversation, Message, MessageEvent
from shared.inbox.sync import choose_route
from shared.outbound.create import OutboundRequest, create_outbound_message, enqueue_send

PAGE_SIZE = 50
# A name search lists the conversations of at most this many matching contacts.
NAME_MATCH_LIMIT = 200
EXPORT_LIMIT = 10_000
TIMELINE_LIMIT = 200
MAX_REPLY_CHARS = 4000
CONSOLE_REPLY_PURPOSE = "agent_reply"  # automations treat it as a staff answer
_PHONE_LIKE = re.compile(r"^[\d\s()+.\-]{8,}$")


@dataclass
class ConversationFilters:
    channel: str | None = None
    status: str | None = None
    needs_agent: bool = False
    unread: bool = False
    intent: str | None = None
    urgency: str | None = None
    q: str | None = None


# The conversations newest first (ix_conversations_last_message; filtered by
# urgency or intent: ix_conversations_urgency_recent / _intent_recent), each
# with its last inbound message's triage (kept on the conversation:
# shared/contacts/conversations.py) and its last message (is the patient
# waiting?). Two levels, so a page costs what it shows: the inner query joins
# the last-message lateral only for the "unread" filter; the outer one reads
# it for the page's rows alone.
_LAST = """
  LEFT JOIN LATERAL (
       SELECT m.direction FROM messages m WHERE m.conversation_id = cv.id
        ORDER BY m.created_at DESC LIMIT 1) last ON true"""
LIST_SQL = """
SELECT cv.id, cv.channel, cv.status, cv.needs_agent, cv.last_message_at,
       cv.contact_id, cv.name, last.direction AS last_direction,
       cv.last_inbound_intent AS intent, cv.last_inbound_urgency AS urgency
  FROM (
       SELECT cv.id, cv.channel, cv.status, cv.needs_agent, cv.last_message_at,
              cv.last_inbound_intent, cv.last_inbound_urgency,
              ct.id AS contact_id, ct.name
         FROM conversations cv
         -- One primary-key probe per conversation walked (OFFSET 0 keeps the
         -- planner from turning it into a scan of every contact).
         JOIN LATERAL (
              SELECT c.id, c.name FROM contacts c
               WHERE c.id = cv.contact_id AND c.erased_at IS NULL OFFSET 0) ct ON true{filter_joins}
        WHERE {where}
        ORDER BY cv.last_message_at DESC NULLS LAST, cv.id
        LIMIT :limit OFFSET :offset) cv""" + _LAST + """
 ORDER BY cv.last_message_at DESC NULLS LAST, cv.id
"""  # noqa: S608 - constant SQL fragments; filters are bound parameters


@dataclass
class ConversationRow:
    id: uuid.UUID
    channel: str
    status: str
    needs_agent: bool
    last_message_at: datetime | None
    contact_id: uuid.UUID
    name: str | None
    unread: bool
    intent: str | None
    urgency: str | None


@dataclass
class NameMatches:
    """The patients a part-of-name search found: at most NAME_MATCH_LIMIT,
    and whether more matched (the page then asks for more of the name)."""

    contact_ids: list[uuid.UUID]
    over_limit: bool


def _is_name_search(q: str | None) -> bool:
    q = (q or "").strip()[:100]
    return bool(q) and "@" not in q and not _PHONE_LIKE.match(q)


def match_names(session: Session, q: str | None) -> NameMatches | None:
    """A part-of-name search, through the trigram index ix_contacts_name_trgm
    (one read, one past the limit to know if there are more); None when `q`
    is not one (empty, an e-mail or a phone)."""
    if not _is_name_search(q):
        return None
    ids = list(session.scalars(
        text("SELECT n.id FROM contacts n WHERE n.name ILIKE :q_name "
             "AND n.erased_at IS NULL LIMIT :over"),
        {"q_name": name_pattern((q or "").strip()[:100]), "over": NAME_MATCH_LIMIT + 1},
    ))
    return NameMatches(ids[:NAME_MATCH_LIMIT], len(ids) > NAME_MATCH_LIMIT)


def search_contacts_clause(
    q: str, names: NameMatches | None = None
) -> tuple[str, dict[str, Any]]:
    """SQL condition on `cv` (its contact) for a search box entry: an e-mail
    or a phone (any format, normalised as stored) match an identity exactly;
    anything else is a part of the name, whose matching patients (`names`,
    from match_names) come first — not a walk of every conversation testing
    its contact's name."""
    q = q.strip()[:100]
    if "@" in q:
        try:
            value = normalize_email(q)
        except InvalidIdentifier:
            value = q.lower()
        return ("cv.contact_id IN (SELECT contact_id FROM contact_identities "
                "WHERE kind = 'email' AND value = :q_identity)"), {"q_identity": value}
    if _PHONE_LIKE.match(q):
        try:
            value = normalize_phone(q)
        except InvalidIdentifier:
            value = q
        return ("cv.contact_id IN (SELECT contact_id FROM contact_identities "
                "WHERE kind = 'phone' AND value = :q_identity)"), {"q_identity": value}
    assert names is not None, "a name search needs match_names() first"
    return "cv.contact_id = ANY(:q_name_ids)", {"q_name_ids": names.contact_ids}


def name_pattern(q: str) -> str:
    escaped = q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _filter_joins(filters: ConversationFilters) -> str:
    """The lateral the inner query needs for these filters."""
    return _LAST if filters.unread else ""


def _where(
    filters: ConversationFilters, names: NameMatches | None
) -> tuple[str, dict[str, Any]]:
    clauses, params = ["true"], {}
    if filters.channel:
        clauses.append("cv.channel = :channel")
        params["channel"] = filters.channel
    if filters.status:
        clauses.append("cv.status = :status")
        params["status"] = filters.status
    if filters.needs_agent:
        clauses.append("cv.needs_agent")
    if filters.unread:
        clauses.append("last.direction = 'inbound'")
    if filters.intent:
        clauses.append("cv.last_inbound_intent = :intent")
        params["intent"] = filters.intent
    if filters.urgency:
        clauses.append("cv.last_inbound_urgency = :urgency")
        params["urgency"] = filters.urgency
    if filters.q and filters.q.strip():
        clause, extra = search_contacts_clause(filters.q, names)
        clauses.append(clause)
        params.update(extra)
    return " AND ".join(clauses), params


def list_conversations(
    session: Session,
    filters: ConversationFilters,
    page: int = 0,
    limit: int = PAGE_SIZE,
    names: NameMatches | None = None,
) -> list[ConversationRow]:
    """One page of the filtered list; `names`: match_names(filters.q) when
    the caller has it already (else read here)."""
    if names is None:
        names = match_names(session, filters.q)
    where, params = _where(filters, names)
    rows = session.execute(
        text(LIST_SQL.format(where=where, filter_joins=_filter_joins(filters))),
        {**params, "limit": limit, "offset": max(0, page) * limit},
    ).all()
    return [
        ConversationRow(r.id, r.channel, r.status, r.needs_agent, r.last_message_at,
                        r.contact_id, r.name, r.last_direction == "inbound", r.intent, r.urgency)
        for r in rows
    ]


def export_csv(session: Session, filters: ConversationFilters) -> str:
    rows = list_conversations(session, filters, 0, EXPORT_LIMIT)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["conversa", "paciente", "canal", "estado", "precisa_atendente",
                     "nao_lida", "intencao", "urgencia", "ultima_mensagem"])
    for r in rows:
        writer.writerow([
            r.id, _csv_safe(r.name or ""), r.channel, r.status, int(r.needs_agent),
            int(r.unread), r.intent or "", r.urgency or "",
            r.last_message_at.isoformat() if r.last_message_at else "",
        ])
    return out.getvalue()


def _csv_safe(value: str) -> str:
    """No spreadsheet formula injection through a patient's name."""
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


@dataclass
class TimelineEntry:
    id: uuid.UUID
    direction: str
    channel: str
    purpose: str
    text: str | None
    template: str | None
    status: str
    status_reason: str | None
    error_code: str | None
    provider: str | None
    cost: Any
    cost_currency: str | None
    cost_estimated: bool | None
    created_at: datetime
    intent: str | None
    urgency: str | None
    clinical: dict[str, Any] | None  # discriminator/reasons: None when hidden
    events: list[tuple[datetime, str | None, str]] = field(default_factory=list)


@dataclass
class ConversationView:
    conversation: Conversation
    contact: Contact | None
    entries: list[TimelineEntry]


def conversation_view(
    session: Session, conversation_id: uuid.UUID, actor: str, sees_clinical: bool
) -> ConversationView:
    conversation = session.get(Conversation, conversation_id)
    if conversation is None:
        raise NotFoundError(str(conversation_id), field="conversation_id")
    contact = session.get(Contact, conversation.contact_id)
    messages: Sequence[Message] = session.scalars(
        select(Message).where(Message.conversation_id == conversation_id)
        .order_by(Message.created_at.desc()).limit(TIMELINE_LIMIT)
    ).all()
    events: dict[uuid.UUID, list[tuple[datetime, str | None, str]]] = {}
    if messages:
        for ev in session.scalars(
            select(MessageEvent).where(MessageEvent.message_id.in_([m.id for m in messages]))
            .order_by(MessageEvent.id)
        ):
            events.setdefault(ev.message_id, []).append((ev.created_at, ev.status_to, ev.event))
    entries = []
    for m in reversed(messages):
        triage = m.triage or {}
        clinical = None
        if sees_clinical and (triage.get("discriminator") or triage.get("urgency_reasons")):
            clinical = {"discriminator": triage.get("discriminator"),
                        "reasons": triage.get("urgency_reasons") or []}
        entries.append(TimelineEntry(
            m.id, m.direction, m.channel, m.purpose, m.text, m.template, m.status,
            m.status_reason, m.error_code, m.provider, m.cost, m.cost_currency,
            m.cost_estimated, m.created_at, triage.get("intent"), triage.get("urgency"),
            clinical, events.get(m.id, []),
        ))
    audit_view(session, actor, "conversation.view", f"contact:{conversation.contact_id}",
               {"conversation_id": str(conversation_id), "clinical": sees_clinical})
    return ConversationView(conversation, contact, entries)


class ReplyRefused(FieldError):
    status = 409


@dataclass
class ReplyOutcome:
    status: str  # queued | skipped
    note: str | None
    after_commit: Callable[[], None]


def reply(
    session: Session, conversation_id: uuid.UUID, body: str, actor: str, settings: Settings
) -> ReplyOutcome:
    """A staff reply from the console on the patient's channel, routed as an
    inbox agent's reply is (shared/inbox/sync.py choose_route: the WhatsApp
    24 h window, an approved template outside it, SMS as the fallback)."""
    body = (body or "").strip()
    if not body:
        raise FieldError("the reply is empty", field="text")
    if len(body) > MAX_REPLY_CHARS:
        raise FieldError(f"at most {MAX_REPLY_CHARS} characters", field="text")
    conversation = session.get(Conversation, conversation_id, with_for_update=True)
    if conversation is None:
        raise NotFoundError(str(conversation_id), field="conversation_id")
    now = datetime.now(UTC)
    route = choose_route(session, conversation, settings, now)
    if route.channel is None or route.to_address is None:
        raise ReplyRefused(route.note or "no route to the patient", field="text")
    contact = session.get(Contact, conversation.contact_id)
    req = OutboundRequest(
        channel=route.channel,
        to_address=route.to_address,
        contact_id=conversation.contact_id,
        conversation_id=conversation.id,
        text=body,
        purpose=CONSOLE_REPLY_PURPOSE,
        idempotency_key=f"console:reply:{uuid.uuid4()}",
        metadata={"console_user": actor[:64]},
    )
    if route.channel == "email":
        req.subject = f"{settings.CLINIC_NAME}: resposta à sua mensagem"
    if route.template:
        req.template = route.template
        req.template_data = {
            "paciente_nome": ((contact.name if contact else None) or "").split(" ")[0]
            or "paciente",
            "resposta": body,
        }
    created = create_outbound_message(session, req)
    conversation.needs_agent = False
    conversation.last_message_at = now
    audit(session, actor, "conversation.reply", f"contact:{conversation.contact_id}",
          {"message_id": str(created.message_id), "channel": route.channel,
           "status": created.status})
    note = route.note
    if created.status == MessageStatus.SKIPPED.value:
        note = f"Resposta NÃO enviada: o paciente pediu para não receber por {route.channel}."
    if created.should_enqueue:
        mid, channel = created.message_id, route.channel
        return ReplyOutcome(created.status, note, lambda: enqueue_send(mid, channel))
    return ReplyOutcome(created.status, note, lambda: None)
