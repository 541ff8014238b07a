"""Find-or-create contacts by any of their identities (the seed's "phone OR
email" rule), race-free.

Concurrency: the transaction takes a PostgreSQL advisory lock per identity
(sorted, so two transactions never wait on each other in a cycle) before
looking up. Two workers filing messages from the same new phone number
serialize on that lock: the second one finds the contact the first created.
The unique index on (kind, value) remains the last guard.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import func, select, text, tuple_, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from shared.enums import IdentityKind
from shared.models import Contact, ContactIdentity, MergeCandidate

# Lookup precedence when identities disagree: the phone wins (it is what
# WhatsApp/SMS replies come from), then email, then inbox ids.
_PRECEDENCE = {
    IdentityKind.PHONE.value: 0,
    IdentityKind.EMAIL.value: 1,
    IdentityKind.CHATWOOT.value: 2,
    IdentityKind.ROCKETCHAT.value: 3,
}


@dataclass
class ContactDetails:
    identities: list[tuple[str, str]]  # (kind, normalized value)
    name: str | None = None
    cpf_hash: str | None = None
    cpf_masked: str | None = None
    cpf_clear: str | None = None
    source: str | None = None
    channel: str | None = None


@dataclass
class ContactMatch:
    contact_id: uuid.UUID
    created: bool
    merge_candidates: list[uuid.UUID] = field(default_factory=list)


def contact_address(session: Session, contact_id: uuid.UUID | None, kind: str) -> str | None:
    """The contact's address of this kind (phone, email, inbox id…). With
    several, the most recently added wins: it is the one the patient used
    last (the scheduler's bulk lookup, scheduling.contact_addresses, agrees)."""
    if contact_id is None:
        return None
    return session.scalar(
        select(ContactIdentity.value)
        .where(ContactIdentity.contact_id == contact_id, ContactIdentity.kind == kind)
        .order_by(ContactIdentity.id.desc())
        .limit(1)
    )


def lock_identities(session: Session, identities: list[tuple[str, str]]) -> None:
    for kind, value in sorted(set(identities)):
        session.execute(
            text("SELECT pg_advisory_xact_lock(hashtextextended(:k, 0))"),
            {"k": f"identity:{kind}:{value}"},
        )


def _resolve_merged(session: Session, contact_id: uuid.UUID) -> uuid.UUID:
    """Follow merged_into links to the surviving contact."""
    for _ in range(10):
        target = session.scalar(select(Contact.merged_into_id).where(Contact.id == contact_id))
        if target is None:
            return contact_id
        contact_id = target
    return contact_id


def find_or_create_contact(session: Session, details: ContactDetails) -> ContactMatch:
    identities = sorted(set(details.identities), key=lambda kv: (_PRECEDENCE.get(kv[0], 9), kv))
    if not identities:
        raise ValueError("a contact needs at least one identity")
    lock_identities(session, identities)

    rows = session.execute(
        select(ContactIdentity.kind, ContactIdentity.value, ContactIdentity.contact_id).where(
            tuple_(ContactIdentity.kind, ContactIdentity.value).in_(identities)
        )
    ).all()
    by_identity = {(r.kind, r.value): r.contact_id for r in rows}

    matched: list[uuid.UUID] = []
    for identity in identities:
        contact_id = by_identity.get(identity)
        if contact_id is not None:
            contact_id = _resolve_merged(session, contact_id)
            if contact_id not in matched:
                matched.append(contact_id)

    created = False
    if matched:
        contact_id = matched[0]
    else:
        contact_id = uuid.uuid4()
        session.add(
            Contact(
                id=contact_id,
                name=details.name,
                cpf_hash=details.cpf_hash,
                cpf_masked=details.cpf_masked,
                cpf_clear=details.cpf_clear,
                source=details.source,
                last_channel=details.channel,
            )
        )
        session.flush()
        created = True

    missing = [i for i in identities if i not in by_identity]
    if missing:
        session.execute(
            insert(ContactIdentity)
            .values([{"contact_id": contact_id, "kind": k, "value": v} for k, v in missing])
            .on_conflict_do_nothing(index_elements=["kind", "value"])
        )

    others = matched[1:]
    for other in others:
        # Never merge silently: record the pair for an operator.
        session.execute(
            insert(MergeCandidate)
            .values(
                contact_id=contact_id,
                other_contact_id=other,
                reason="one message carried identities of both contacts",
            )
            .on_conflict_do_nothing(constraint="uq_merge_pair")
        )

    if not created:
        _fill_blanks(session, contact_id, details)
    return ContactMatch(contact_id=contact_id, created=created, merge_candidates=others)


def _fill_blanks(session: Session, contact_id: uuid.UUID, details: ContactDetails) -> None:
    """Complete what the contact lacks; never overwrite what it has."""
    values: dict[str, object] = {"updated_at": datetime.now(UTC)}
    if details.channel:
        values["last_channel"] = details.channel
    stmt = update(Contact).where(Contact.id == contact_id)
    if details.name:
        values["name"] = func.coalesce(Contact.name, details.name)
    if details.cpf_hash:
        values["cpf_hash"] = func.coalesce(Contact.cpf_hash, details.cpf_hash)
        values["cpf_masked"] = func.coalesce(Contact.cpf_masked, details.cpf_masked)
        if details.cpf_clear:
            values["cpf_clear"] = func.coalesce(Contact.cpf_clear, details.cpf_clear)
    session.execute(stmt.values(**values))


def contact_details_from_payload(
    contact: dict[str, object], channel: str, source: str
) -> ContactDetails:
    """The inbound task payload's `contact` block → ContactDetails."""
    identities: list[tuple[str, str]] = []
    if isinstance(contact.get("phone"), str):
        identities.append((IdentityKind.PHONE.value, str(contact["phone"])))
    if isinstance(contact.get("email"), str):
        identities.append((IdentityKind.EMAIL.value, str(contact["email"])))
    for kind in (IdentityKind.CHATWOOT.value, IdentityKind.ROCKETCHAT.value):
        if isinstance(contact.get(kind), str):
            identities.append((kind, str(contact[kind])))
    return ContactDetails(
        identities=identities,
        name=contact.get("name") if isinstance(contact.get("name"), str) else None,  # type: ignore[arg-type]
        cpf_hash=contact.get("cpf_hash"),  # type: ignore[arg-type]
        cpf_masked=contact.get("cpf_masked"),  # type: ignore[arg-type]
        cpf_clear=contact.get("cpf"),  # type: ignore[arg-type]
        source=source,
        channel=channel,
    )
