"""What needs a human: sends that failed or whose fate is unknown, dead
letters, urgent patient messages nobody answered, merge candidates, opt-outs.

The actions reuse the existing functions: dead letters replay through
shared/core/dead_letters.py `replay`; merges through shared/contacts/admin.py
(`merge_contacts`, `dismiss_merge_candidate`); a failed send is retried as a
new message through the normal send path (the failed row stays, as history).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import text, update
from sqlalchemy.orm import Session

from shared.console.audit import audit
from shared.core.enums import MessageStatus
from shared.core.errors import FieldError, NotFoundError
from shared.core.models import Message, OptOut
from shared.outbound.create import OutboundRequest, create_outbound_message, enqueue_send

# Rows per list on the page: its cost follows what it shows, not the backlog.
LIST_LIMIT = 50
URGENT_GRADES = ("emergency", "very_urgent", "urgent")
URGENT_LOOKBACK = timedelta(days=7)

# ix_messages_unsettled covers `unknown`; failed ones are read newest first by
# ix_messages_created_at within the look-back window.
PROBLEM_SQL = text("""
SELECT m.id, m.channel, m.status, m.status_reason, m.error_code, m.provider, m.purpose,
       m.created_at, m.contact_id, c.name
  FROM messages m LEFT JOIN contacts c ON c.id = m.contact_id
 WHERE m.direction = 'outbound' AND m.status IN ('failed', 'unknown')
   AND m.created_at >= :since
   AND NOT coalesce(m.metadata ? 'console_retried', false)
 ORDER BY m.created_at DESC LIMIT :limit
""")

URGENT_SQL = text("""
SELECT m.id, m.conversation_id, m.channel, m.created_at, m.triage->>'urgency' AS urgency,
       m.triage->>'intent' AS intent, c.name
  FROM messages m LEFT JOIN contacts c ON c.id = m.contact_id
 WHERE m.direction = 'inbound' AND m.created_at >= :since
   AND m.triage->>'urgency' IN ('emergency', 'very_urgent', 'urgent')
   AND NOT EXISTS (SELECT 1 FROM messages r
                    WHERE r.conversation_id = m.conversation_id
                      AND r.direction = 'outbound' AND r.purpose = 'agent_reply'
                      AND r.created_at > m.created_at)
 ORDER BY m.created_at DESC LIMIT :limit
""")

MERGE_SQL = text("""
SELECT mc.id, mc.contact_id, mc.other_contact_id, mc.reason, mc.created_at,
       a.name AS name_a, b.name AS name_b
  FROM merge_candidates mc
  JOIN contacts a ON a.id = mc.contact_id JOIN contacts b ON b.id = mc.other_contact_id
 WHERE mc.status = 'open' ORDER BY mc.id LIMIT :limit
""")

OPT_OUT_SQL = text("""
SELECT o.id, o.contact_id, o.channel, o.keyword, o.source, o.created_at, c.name
  FROM opt_outs o JOIN contacts c ON c.id = o.contact_id
 WHERE o.revoked_at IS NULL ORDER BY o.created_at DESC LIMIT :limit
""")


@dataclass
class Attention:
    problems: list[Any]
    dead_letters: list[Any]
    urgent: list[Any]
    merges: list[Any]
    opt_outs: list[Any]


def needs_a_human(session: Session, now: datetime) -> Attention:
    from shared.core.dead_letters import list_dead_letters

    since = now - URGENT_LOOKBACK
    return Attention(
        problems=list(session.execute(PROBLEM_SQL, {"since": since, "limit": LIST_LIMIT}).all()),
        dead_letters=list_dead_letters(session, limit=LIST_LIMIT),
        urgent=list(session.execute(URGENT_SQL, {"since": since, "limit": LIST_LIMIT}).all()),
        merges=list(session.execute(MERGE_SQL, {"limit": LIST_LIMIT}).all()),
        opt_outs=list(session.execute(OPT_OUT_SQL, {"limit": LIST_LIMIT}).all()),
    )


class RetryRefused(FieldError):
    status = 409


def retry_failed_message(
    session: Session, message_id: uuid.UUID, actor: str
) -> Callable[[], None]:
    """Send a failed message again as a new message (same recipient and
    content) through the normal send path; opt-outs are checked again.
    Returns the enqueue to run after the commit."""
    original = session.get(Message, message_id, with_for_update=True)
    if original is None:
        raise NotFoundError(str(message_id), field="message_id")
    if original.direction != "outbound" or original.status != MessageStatus.FAILED.value:
        raise RetryRefused("only a failed outbound message can be retried", field="message_id")
    if "console_retried" in (original.metadata_ or {}):
        raise RetryRefused("already retried", field="message_id")
    if not original.to_address:
        raise RetryRefused("the message has no recipient (erased?)", field="message_id")
    created = create_outbound_message(
        session,
        OutboundRequest(
            channel=original.channel,
            to_address=original.to_address,
            contact_id=original.contact_id,
            conversation_id=original.conversation_id,
            subject_contact_id=original.subject_contact_id,
            text=original.text,
            subject=original.subject,
            template=original.template,
            template_data=original.template_data,
            purpose=original.purpose,
            idempotency_key=f"console:retry:{original.id}",
            metadata={**(original.metadata_ or {}), "retry_of": str(original.id)},
            respect_opt_out=(original.metadata_ or {}).get("respect_opt_out", True),
        ),
    )
    original.metadata_ = {**(original.metadata_ or {}), "console_retried": str(created.message_id)}
    audit(session, actor, "message.retry", f"message:{original.id}",
          {"new_message_id": str(created.message_id), "status": created.status})
    if created.should_enqueue:
        mid, channel = created.message_id, original.channel
        return lambda: enqueue_send(mid, channel)
    return lambda: None


def revoke_opt_out(session: Session, opt_out_id: int, actor: str, now: datetime) -> bool:
    """The patient asked to receive messages again (told the desk in person
    or by phone); the opt-out row stays, revoked, as the record."""
    row = session.execute(
        update(OptOut).where(OptOut.id == opt_out_id, OptOut.revoked_at.is_(None))
        .values(revoked_at=now).returning(OptOut.contact_id, OptOut.channel)
    ).first()
    if row is None:
        return False
    audit(session, actor, "opt_out.revoke", f"contact:{row.contact_id}",
          {"opt_out_id": opt_out_id, "channel": row.channel})
    return True
