"""Operator actions on contacts: look (with identities, conversations, recent
messages, merge candidates, opt-outs), merge two contacts, erase one (LGPD
Art. 18). Each action is one transaction; merge and erase leave an audit row.

The CPF is only ever shown masked. Erasure keeps the contact row (its id is a
random UUID, a pseudonym once identities and name are gone) so the audit trail
and delivery statistics stay consistent, and it is idempotent.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import CursorResult, delete, func, or_, select, tuple_, update
from sqlalchemy.orm import Session

from shared.contacts.conversations import refresh_last_inbound_triage
from shared.contacts.directory import lock_identities
from shared.core.dead_letters import erase_for_contact
from shared.core.enums import (
    ConversationStatus,
    Direction,
    IdentityKind,
    MessageStatus,
    ScheduledStatus,
)
from shared.core.errors import FieldError, NotFoundError
from shared.core.models import (
    Appointment,
    AuditEvent,
    Contact,
    ContactIdentity,
    Conversation,
    MergeCandidate,
    Message,
    MessageEvent,
    OptOut,
    ScheduledMessage,
    WaitlistEntry,
    WaitlistOffer,
)
from shared.core.taskqueue import idempotency_redis_key

# How many of a contact's newest messages the overview carries.
RECENT_MESSAGES = 20


def _rowcount(session: Session, stmt: Any) -> int:
    """Rows an UPDATE/DELETE changed."""
    result = session.execute(stmt)
    return int(cast(CursorResult[Any], result).rowcount)


class ContactNotFound(NotFoundError):
    """No such contact; `field` names which id was unknown."""

    def __init__(self, contact_id: str, field: str = "id") -> None:
        super().__init__("contact not found", field)
        self.contact_id = contact_id


class MergeRefused(FieldError):
    """The merge cannot be done as asked; the message says why (no PII).
    A conflict with the contacts' state: 409."""

    status = 409

    def __init__(self, message: str, field: str = "other_contact_id") -> None:
        super().__init__(message, field)


@dataclass
class ContactOverview:
    """Everything an operator needs to judge a contact (ingest/api/contacts.py
    shapes it as JSON)."""

    contact: Contact
    identities: Sequence[ContactIdentity]
    conversations: Sequence[Conversation]
    message_count: int
    # The RECENT_MESSAGES newest.
    recent_messages: Sequence[Message]
    merge_candidates: Sequence[MergeCandidate]
    opt_outs: Sequence[OptOut]


def contact_overview(
    session: Session, contact_id: uuid.UUID, actor: str | None = None
) -> ContactOverview:
    """Everything an operator needs to judge a contact. Raises ContactNotFound.

    With an `actor`, the access itself is audited: health data (LGPD Art. 11)
    warrants knowing who looked at whom.
    """
    contact = session.get(Contact, contact_id)
    if contact is None:
        raise ContactNotFound(str(contact_id))
    if actor is not None:
        session.add(
            AuditEvent(actor=actor[:64], action="contact.view", subject=f"contact:{contact_id}")
        )
    identities = session.scalars(
        select(ContactIdentity)
        .where(ContactIdentity.contact_id == contact_id)
        .order_by(ContactIdentity.kind, ContactIdentity.id)
    ).all()
    conversations = session.scalars(
        select(Conversation)
        .where(Conversation.contact_id == contact_id)
        .order_by(Conversation.created_at.desc())
    ).all()
    messages = session.scalars(
        select(Message)
        .where(Message.contact_id == contact_id)
        .order_by(Message.created_at.desc(), Message.id)
        .limit(RECENT_MESSAGES)
    ).all()
    message_count = session.scalar(
        select(func.count()).select_from(Message).where(Message.contact_id == contact_id)
    )
    candidates = session.scalars(
        select(MergeCandidate)
        .where(
            or_(
                MergeCandidate.contact_id == contact_id,
                MergeCandidate.other_contact_id == contact_id,
            )
        )
        .order_by(MergeCandidate.id)
    ).all()
    opt_outs = session.scalars(
        select(OptOut).where(OptOut.contact_id == contact_id).order_by(OptOut.id)
    ).all()
    return ContactOverview(
        contact, identities, conversations, message_count or 0, messages, candidates, opt_outs
    )


def find_contacts(session: Session, identities: list[tuple[str, str]]) -> list[uuid.UUID]:
    """Contacts owning any of these (normalized) identities, following merges
    to the surviving contact — how an operator finds who "+55 54 …" is."""
    if not identities:
        return []
    owners = session.scalars(
        select(ContactIdentity.contact_id).where(
            tuple_(ContactIdentity.kind, ContactIdentity.value).in_(identities)
        )
    ).all()
    found: list[uuid.UUID] = []
    for cid in owners:
        for _ in range(10):
            parent = session.scalar(select(Contact.merged_into_id).where(Contact.id == cid))
            if parent is None:
                break
            cid = parent
        if cid not in found:
            found.append(cid)
    return found


CANDIDATE_STATUSES = ("open", "merged", "dismissed")


def list_merge_candidates(
    session: Session, status: str = "open", limit: int = 50, after_id: int = 0
) -> Sequence[MergeCandidate]:
    """Merge candidates, oldest first, keyset-paged by id."""
    return session.scalars(
        select(MergeCandidate)
        .where(MergeCandidate.status == status, MergeCandidate.id > after_id)
        .order_by(MergeCandidate.id)
        .limit(limit)
    ).all()


def dismiss_merge_candidate(session: Session, candidate_id: int, actor: str) -> str | None:
    """An operator judged the pair to be two people. Returns the candidate's
    status afterwards (None if unknown). Idempotent; a merged pair stays merged."""
    cand = session.get(MergeCandidate, candidate_id, with_for_update=True)
    if cand is None:
        return None
    if cand.status == "open":
        cand.status = "dismissed"
        session.add(
            AuditEvent(
                actor=actor[:64],
                action="merge_candidate.dismiss",
                subject=f"contact:{cand.contact_id}",
                detail={"other_contact_id": str(cand.other_contact_id), "candidate_id": cand.id},
            )
        )
    return cand.status


@dataclass
class MergeResult:
    contact_id: uuid.UUID
    merged_id: uuid.UUID
    already_merged: bool
    moved: dict[str, int]


def _lock_contacts(session: Session, ids: list[uuid.UUID]) -> dict[uuid.UUID, Contact]:
    """Row-lock both contacts in a fixed order (no deadlock between two
    merges of the same pair asked the other way round)."""
    found = {}
    for cid in sorted(ids):
        row = session.scalar(
            select(Contact)
            .where(Contact.id == cid)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        if row is not None:
            found[cid] = row
    return found


def merge_contacts(
    session: Session, keep_id: uuid.UUID, other_id: uuid.UUID, actor: str
) -> MergeResult:
    """Merge `other` into `keep`: identities, conversations, messages,
    appointments and opt-outs move; `other.merged_into_id = keep`.

    Running it again for the same pair changes nothing (already_merged).
    """
    if keep_id == other_id:
        raise MergeRefused("cannot merge a contact into itself")
    rows = _lock_contacts(session, [keep_id, other_id])
    keep, other = rows.get(keep_id), rows.get(other_id)
    if keep is None:
        raise ContactNotFound(str(keep_id))
    if other is None:
        raise ContactNotFound(str(other_id), field="other_contact_id")
    if other.merged_into_id == keep_id:
        return MergeResult(keep_id, other_id, already_merged=True, moved={})
    _refuse_unmergeable(keep, other)
    _lock_identities_of(session, [other_id])

    now = datetime.now(UTC)
    moved: dict[str, int] = {}
    moved["identities"] = _move_identities(session, keep_id, other_id)
    moved["conversations_closed"] = _close_second_active_conversation(
        session, keep_id, other_id, now
    )
    moved["conversations"] = _move(session, Conversation, keep_id, other_id)
    moved["messages"] = _move(session, Message, keep_id, other_id)
    moved["appointments"] = _move(session, Appointment, keep_id, other_id)
    # A place on the waitlist and the offers made to it are the patient's:
    # an answer ("QUERO") from the kept contact's address must find them.
    moved["waitlist_entries"] = _move(session, WaitlistEntry, keep_id, other_id)
    moved["waitlist_offers"] = _move(session, WaitlistOffer, keep_id, other_id)
    moved["opt_outs"] = _move_opt_outs(session, keep_id, other_id, now)
    _settle_merge_candidates(session, keep_id, other_id)
    _fill_gaps(keep, other, now)
    other.merged_into_id = keep_id
    other.updated_at = now

    session.add(
        AuditEvent(
            actor=actor[:64],
            action="contact.merge",
            subject=f"contact:{keep_id}",
            detail={"merged_contact_id": str(other_id), "moved": moved},
        )
    )
    session.flush()
    return MergeResult(keep_id, other_id, already_merged=False, moved=moved)


_INBOX_BOOKKEEPING_KINDS = frozenset({IdentityKind.CHATWOOT.value, IdentityKind.ROCKETCHAT.value})


def merge_attested_duplicates(
    session: Session,
    contact_id: uuid.UUID,
    others: list[uuid.UUID],
    attested: dict[tuple[str, str], str],
) -> list[uuid.UUID]:
    """The verified path that joins a patient's chat to their record: the
    provider attests, in one message, that *all* these identities are the
    sender's (a Telegram update from a chat sharing the account's own phone).
    Another contact matched by the message that holds nothing but some of
    these identities (the chat's contact, made by its first messages) is this
    same person, so it is merged into `contact_id` — identities, messages,
    conversations move; the audit row names the provider. A contact holding
    anything else stays apart, a merge candidate for the team (never merged
    silently). Returns the contacts merged."""
    vias = set(attested.values())
    if len(attested) < 2 or len(vias) != 1:
        return []
    merged = []
    for other in others:
        # The agent inbox's ids are the bridge's own bookkeeping for the
        # contact (made when its first message was posted there), not a claim
        # by anyone: they do not make the chat's contact someone else.
        held = {
            (kind, value)
            for kind, value in session.execute(
                select(ContactIdentity.kind, ContactIdentity.value).where(
                    ContactIdentity.contact_id == other
                )
            )
            if kind not in _INBOX_BOOKKEEPING_KINDS
        }
        if held and held <= set(attested):
            try:
                merge_contacts(session, contact_id, other, actor=f"attested:{next(iter(vias))}")
            except MergeRefused:  # erased, or merged elsewhere already: the team's call
                continue
            merged.append(other)
    return merged


def _refuse_unmergeable(keep: Contact, other: Contact) -> None:
    if keep.merged_into_id is not None:
        raise MergeRefused("this contact was merged into another; merge into that one", "id")
    if other.merged_into_id is not None:
        raise MergeRefused("that contact was already merged into another contact")
    if keep.erased_at is not None or other.erased_at is not None:
        raise MergeRefused("an erased contact cannot be merged")


def _lock_identities_of(session: Session, ids: list[uuid.UUID]) -> list[tuple[str, str]]:
    """Inbound filing locks identities before touching a contact: taking the
    same locks makes a message arriving for these contacts mid-merge (or
    mid-erasure) wait, then follow merged_into_id. Returns the identities."""
    identities = [
        (kind, value)
        for kind, value in session.execute(
            select(ContactIdentity.kind, ContactIdentity.value).where(
                ContactIdentity.contact_id.in_(ids)
            )
        ).all()
    ]
    lock_identities(session, identities)
    return identities


def _move_identities(session: Session, keep_id: uuid.UUID, other_id: uuid.UUID) -> int:
    return _rowcount(
        session,
        update(ContactIdentity)
        .where(ContactIdentity.contact_id == other_id)
        # The operator who merges vouches that these addresses are the patient's.
        .values(
            contact_id=keep_id,
            verified_via=func.coalesce(ContactIdentity.verified_via, "merge"),
            verified_at=func.coalesce(ContactIdentity.verified_at, func.now()),
        ),
    )


def _close_second_active_conversation(
    session: Session, keep_id: uuid.UUID, other_id: uuid.UUID, now: datetime
) -> int:
    """One active conversation per contact: if both have one, the other's is
    closed (its messages stay in it, now under `keep`)."""
    keep_active = session.scalar(
        select(Conversation.id).where(
            Conversation.contact_id == keep_id,
            Conversation.status == ConversationStatus.ACTIVE.value,
        )
    )
    if keep_active is None:
        return 0
    return _rowcount(
        session,
        update(Conversation)
        .where(
            Conversation.contact_id == other_id,
            Conversation.status == ConversationStatus.ACTIVE.value,
        )
        .values(status=ConversationStatus.CLOSED.value, closed_at=now),
    )


def _move(
    session: Session,
    table: type[Conversation] | type[Message] | type[Appointment] | type[WaitlistEntry]
    | type[WaitlistOffer],
    keep_id: uuid.UUID,
    other_id: uuid.UUID,
) -> int:
    """Re-point a table's `contact_id` from `other` to `keep`."""
    return _rowcount(
        session, update(table).where(table.contact_id == other_id).values(contact_id=keep_id)
    )


def _move_opt_outs(session: Session, keep_id: uuid.UUID, other_id: uuid.UUID, now: datetime) -> int:
    """One active opt-out per (contact, channel): where `keep` already has the
    same one, the duplicate is retired (the opt-out itself still holds)."""
    keep_channels = set(
        session.scalars(
            select(OptOut.channel).where(OptOut.contact_id == keep_id, OptOut.revoked_at.is_(None))
        )
    )
    if keep_channels:
        session.execute(
            update(OptOut)
            .where(
                OptOut.contact_id == other_id,
                OptOut.revoked_at.is_(None),
                OptOut.channel.in_(sorted(keep_channels)),
            )
            .values(revoked_at=now, source=func.left(func.concat(OptOut.source, " (merged)"), 64))
        )
    return _rowcount(
        session, update(OptOut).where(OptOut.contact_id == other_id).values(contact_id=keep_id)
    )


def _settle_merge_candidates(session: Session, keep_id: uuid.UUID, other_id: uuid.UUID) -> None:
    """The pair's candidates are settled; the other's candidates with third
    contacts now concern `keep` (dropped where that would duplicate a pair)."""
    session.execute(
        update(MergeCandidate)
        .where(
            or_(
                (MergeCandidate.contact_id == keep_id)
                & (MergeCandidate.other_contact_id == other_id),
                (MergeCandidate.contact_id == other_id)
                & (MergeCandidate.other_contact_id == keep_id),
            )
        )
        .values(status="merged")
    )
    for cand in session.scalars(
        select(MergeCandidate).where(
            or_(MergeCandidate.contact_id == other_id, MergeCandidate.other_contact_id == other_id),
            MergeCandidate.status == "open",
        )
    ).all():
        third = cand.other_contact_id if cand.contact_id == other_id else cand.contact_id
        exists = session.scalar(
            select(MergeCandidate.id).where(
                or_(
                    (MergeCandidate.contact_id == keep_id)
                    & (MergeCandidate.other_contact_id == third),
                    (MergeCandidate.contact_id == third)
                    & (MergeCandidate.other_contact_id == keep_id),
                )
            )
        )
        if exists is None:
            cand.contact_id, cand.other_contact_id = keep_id, third
        else:
            session.delete(cand)


def _fill_gaps(keep: Contact, other: Contact, now: datetime) -> None:
    """Fill what `keep` lacks from `other`; never overwrite."""
    for attr in ("name", "cpf_hash", "cpf_masked", "cpf_clear", "preferred_channel", "source"):
        if getattr(keep, attr) is None and getattr(other, attr) is not None:
            setattr(keep, attr, getattr(other, attr))
    keep.updated_at = now


@dataclass
class EraseResult:
    contact_id: uuid.UUID
    already_erased: bool
    counts: dict[str, int]
    # For `forget_in_redis`, after the commit: what Redis may still hold.
    message_ids: list[str] = field(default_factory=list)
    idempotency_keys: list[str] = field(default_factory=list)
    phones: list[str] = field(default_factory=list)
    telegram_chats: list[str] = field(default_factory=list)


def _hashed(column: Any) -> Any:
    """'erased:<sha256 hex>' of a key: still unique, no longer readable."""
    digest = func.encode(func.sha256(func.convert_to(column, "UTF8")), "hex")
    return func.concat("erased:", digest)


def erase_contact(session: Session, contact_id: uuid.UUID, actor: str) -> EraseResult:
    """LGPD erasure: remove message bodies, subjects, metadata, template data,
    triage, addresses and the events' raw payloads; identities, name and CPF.

    The messages are every one about the person: theirs (`contact_id`), the
    team alerts, on-call SMS and request e-mails quoting them
    (`subject_contact_id`), and anything else in their conversations.
    Idempotency keys (which callers may build from a phone or an e-mail) and
    e-mail Message-IDs become hashes. Appointments lose their notes and
    address; professional and location (the clinic's own data) stay.

    The person is erased, not one row of them: an id that was merged into
    another contact erases the surviving contact, and every contact merged
    into it (at any depth) goes with it. Keeps the pseudonymous contact rows
    and writes one audit row. Idempotent. Redis copies are dropped by
    `forget_in_redis` once this transaction has committed."""
    if session.get(Contact, contact_id) is None:
        raise ContactNotFound(str(contact_id))
    root = _surviving_contact(session, contact_id)
    contact = _lock_contacts(session, [root])[root]
    if contact.erased_at is not None:
        return EraseResult(root, already_erased=True, counts={})
    ids = _merged_into(session, root)
    identities = _lock_identities_of(session, ids)

    now = datetime.now(UTC)
    about_person = or_(
        Message.contact_id.in_(ids),
        Message.subject_contact_id.in_(ids),
        Message.conversation_id.in_(select(Conversation.id).where(Conversation.contact_id.in_(ids))),
    )
    # Read before the keys are hashed: `forget_in_redis` needs them clear.
    affected = session.execute(
        select(Message.id, Message.idempotency_key).where(about_person)
    ).all()
    message_ids = select(Message.id).where(about_person).scalar_subquery()
    counts: dict[str, int] = {}
    counts["messages"] = _scrub_messages(session, about_person, now)
    counts["message_events"] = _scrub_message_events(session, message_ids)
    # Tasks that gave up keep their arguments for a replay; not the person's.
    counts["dead_letters"] = erase_for_contact(
        session, message_ids, [value for _, value in identities]
    )
    counts["sends_cancelled"] = _cancel_sends(session, about_person)
    counts["reminders_cancelled"] = _cancel_reminders(session, ids, now)
    counts["identities"] = _rowcount(
        session, delete(ContactIdentity).where(ContactIdentity.contact_id.in_(ids))
    )
    counts["appointments"] = _scrub_appointments(session, ids, now)
    # Waiting for a slot is about the person: gone (their offers with it).
    counts["waitlist_entries"] = _rowcount(
        session, delete(WaitlistEntry).where(WaitlistEntry.contact_id.in_(ids))
    )
    session.execute(
        delete(MergeCandidate).where(
            or_(MergeCandidate.contact_id.in_(ids), MergeCandidate.other_contact_id.in_(ids))
        )
    )
    _scrub_contacts(session, ids, now)
    # Opt-outs are kept: they hold no personal data and "do not contact"
    # must outlive the erasure of everything else.
    session.add(
        AuditEvent(
            actor=actor[:64],
            action="contact.erase",
            subject=f"contact:{root}",
            detail={
                "contacts": len(ids),
                **({"requested_contact_id": str(contact_id)} if contact_id != root else {}),
                **counts,
            },
        )
    )
    session.flush()
    return EraseResult(
        root,
        already_erased=False,
        counts=counts,
        message_ids=[str(row.id) for row in affected],
        idempotency_keys=[row.idempotency_key for row in affected if row.idempotency_key],
        phones=[value for _, value in identities if value.startswith("+")],
        telegram_chats=[value for kind, value in identities if kind == IdentityKind.TELEGRAM.value],
    )


def _surviving_contact(session: Session, contact_id: uuid.UUID) -> uuid.UUID:
    """The contact `contact_id` was merged into, at any depth (bounded)."""
    root = contact_id
    for _ in range(10):
        parent = session.scalar(select(Contact.merged_into_id).where(Contact.id == root))
        if parent is None:
            break
        root = parent
    return root


def _merged_into(session: Session, root: uuid.UUID) -> list[uuid.UUID]:
    """`root` and every contact merged into it, at any depth."""
    ids = [root]
    frontier = [root]
    while frontier:
        children = list(
            session.scalars(select(Contact.id).where(Contact.merged_into_id.in_(frontier)))
        )
        frontier = [c for c in children if c not in ids]
        ids.extend(frontier)
    return ids


def _scrub_messages(session: Session, about_person: Any, now: datetime) -> int:
    """Bodies, addresses and metadata go; idempotency keys and e-mail
    Message-IDs become hashes. Returns the messages scrubbed."""
    scrubbed = _rowcount(
        session,
        update(Message)
        .where(about_person)
        .values(
            text=None,
            subject=None,
            metadata_=None,
            template_data=None,
            triage=None,
            to_address=None,
            status_reason=None,
            updated_at=now,
        ),
    )
    # Their conversations' last inbound triage went with it.
    refresh_last_inbound_triage(session, list(session.scalars(
        select(Message.conversation_id)
        .where(about_person, Message.conversation_id.is_not(None))
        .distinct()
    )))
    session.execute(
        update(Message)
        .where(about_person, Message.idempotency_key.is_not(None))
        .where(Message.idempotency_key.not_like("erased:%"))
        .values(idempotency_key=_hashed(Message.idempotency_key))
    )
    # E-mail Message-IDs may embed the sender's address.
    session.execute(
        update(Message)
        .where(about_person, Message.provider_message_id.contains("@"))
        .values(provider_message_id=_hashed(Message.provider_message_id))
    )
    return scrubbed


def _scrub_message_events(session: Session, message_ids: Any) -> int:
    return _rowcount(
        session,
        update(MessageEvent)
        .where(MessageEvent.message_id.in_(message_ids))
        .values(payload=None, detail=None),
    )


def _cancel_sends(session: Session, about_person: Any) -> int:
    """Nothing more goes out to an erased person: queued sends are cancelled
    (the send worker's claim from `queued` then finds nothing)."""
    cancelled = session.scalars(
        update(Message)
        .where(
            about_person,
            Message.direction == Direction.OUTBOUND.value,
            Message.status == MessageStatus.QUEUED.value,
        )
        .values(status=MessageStatus.CANCELLED.value, status_reason="contact erased")
        .returning(Message.id)
    ).all()
    for message_id in cancelled:
        session.add(
            MessageEvent(
                message_id=message_id,
                event="cancelled",
                status_from=MessageStatus.QUEUED.value,
                status_to=MessageStatus.CANCELLED.value,
                detail="contact erased",
            )
        )
    return len(cancelled)


def _cancel_reminders(session: Session, ids: list[uuid.UUID], now: datetime) -> int:
    """Pending reminders of the person's appointments, likewise."""
    return _rowcount(
        session,
        update(ScheduledMessage)
        .where(
            ScheduledMessage.appointment_id.in_(
                select(Appointment.id).where(Appointment.contact_id.in_(ids))
            ),
            ScheduledMessage.status == ScheduledStatus.PENDING.value,
        )
        .values(status=ScheduledStatus.CANCELLED.value, reason="contact erased", updated_at=now),
    )


def _scrub_appointments(session: Session, ids: list[uuid.UUID], now: datetime) -> int:
    """Notes and address go; professional and location are the clinic's."""
    return _rowcount(
        session,
        update(Appointment)
        .where(Appointment.contact_id.in_(ids))
        .values(notes=None, address=None, updated_at=now),
    )


def _scrub_contacts(session: Session, ids: list[uuid.UUID], now: datetime) -> None:
    """The rows stay, as pseudonyms: their ids are random UUIDs."""
    session.execute(
        update(Contact)
        .where(Contact.id.in_(ids))
        .values(
            name=None,
            cpf_hash=None,
            cpf_masked=None,
            cpf_clear=None,
            erased_at=now,
            updated_at=now,
        )
    )


def forget_in_redis(client: Any, result: EraseResult) -> int:
    """Drop what Redis holds of an erased person; returns the keys deleted.

    Idempotency keys live there under the sender's own key
    (`clinicq:idem:webhook:<webhook-id>`, `clinicq:idem:imap:<Message-ID>`)
    for IDEMPOTENCY_TTL_SECONDS, valued with the message id; the WhatsApp
    pair rate limit names the recipient's number, Telegram's per-chat limit
    the chat id. Deleting a dedupe key means
    a replay after the erasure is filed as a new message — the sender sent
    the data again. Best effort: a Redis outage leaves these to expire."""
    if not result.message_ids:
        return 0
    exact = [idempotency_redis_key(*key.split(":", 1)) for key in result.idempotency_keys
             if ":" in key]
    ours = set(result.message_ids)
    doomed = set(exact)
    batch: list[Any] = []
    for key in client.scan_iter(match="clinicq:idem:*", count=1000):
        batch.append(key)
        if len(batch) >= 500:
            doomed.update(k for k, v in zip(batch, client.mget(batch), strict=True)
                          if v is not None and v.decode() in ours)
            batch = []
    if batch:
        doomed.update(k for k, v in zip(batch, client.mget(batch), strict=True)
                      if v is not None and v.decode() in ours)
    for phone in result.phones:
        doomed.update(client.scan_iter(match=f"clinicq:rl:whatsapp-pair:*:{phone}", count=1000))
    for chat in result.telegram_chats:  # the per-chat limit names the chat
        doomed.update(client.scan_iter(match=f"clinicq:rl:telegram-chat:*:{chat}", count=1000))
    return int(client.delete(*doomed)) if doomed else 0
