"""Find-or-create contacts by any of their identities (the seed's "phone OR
email" rule), race-free.

Concurrency: the transaction takes a PostgreSQL advisory lock per identity
(sorted, so two transactions never wait on each other in a cycle) before
looking up. Two workers filing messages from the same new phone number
serialize on that lock: the second one finds the contact the first created.
The unique index on (kind, value) remains the last guard.

Trust (ARCHITECTURE rule 11): `ContactDetails.verified` names the identities
the source vouches for (a Twilio/Meta sender number, an authenticated e-mail
sender, whatever the booking system or an operator supplied), each with how.
An identity nobody vouched for (a public form, a plain e-mail `From:`) is
filed, but it is never attached to an existing contact: it is held on a
contact of its own and a merge candidate is recorded for the team, so it can
never become a delivery address for somebody else's patient.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select, text, tuple_, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from shared.core.enums import IdentityKind
from shared.core.models import Contact, ContactIdentity, MergeCandidate

# Lookup precedence when identities disagree: the phone wins (it is what
# WhatsApp/SMS replies come from), then email, then inbox ids.
_PRECEDENCE = {
    IdentityKind.PHONE.value: 0,
    IdentityKind.EMAIL.value: 1,
    IdentityKind.CHATWOOT.value: 2,
    IdentityKind.ROCKETCHAT.value: 3,
    IdentityKind.PSID.value: 4,
    IdentityKind.IGSID.value: 5,
    IdentityKind.TELEGRAM.value: 6,
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
    # (kind, value) → who vouched for it ("twilio", "appointments", "imap:dmarc"…)
    verified: dict[tuple[str, str], str] = field(default_factory=dict)

    def vouched_by(self, via: str) -> ContactDetails:
        """Every identity verified by `via` (an API-key caller, an operator)."""
        self.verified = {identity: via for identity in self.identities}
        return self


@dataclass
class ContactMatch:
    contact_id: uuid.UUID
    created: bool
    merge_candidates: list[uuid.UUID] = field(default_factory=list)
    # The source vouched for an identity the contact owns: the sender is them.
    sender_verified: bool = False
    # Unverified identities named beside this contact's, kept on a contact of
    # their own (a merge candidate of this one).
    held_apart: uuid.UUID | None = None


def identity_order() -> tuple[Any, Any]:
    """Delivery preference among a contact's identities of one kind: verified
    ones first, then the most recently added (the one the patient used last).
    The scheduler's bulk lookup (scheduling.contact_addresses) agrees."""
    return (ContactIdentity.verified_at.is_(None), ContactIdentity.id.desc())


def contact_address(session: Session, contact_id: uuid.UUID | None, kind: str) -> str | None:
    """The contact's address of this kind (phone, email, inbox id…): a
    verified one if there is any, the newest among equals."""
    if contact_id is None:
        return None
    return session.scalar(
        select(ContactIdentity.value)
        .where(ContactIdentity.contact_id == contact_id, ContactIdentity.kind == kind)
        .order_by(*identity_order())
        .limit(1)
    )


def verified_address(session: Session, contact_id: uuid.UUID, kind: str) -> str | None:
    """The contact's newest *verified* address of this kind, or None."""
    return session.scalar(
        select(ContactIdentity.value)
        .where(
            ContactIdentity.contact_id == contact_id,
            ContactIdentity.kind == kind,
            ContactIdentity.verified_at.is_not(None),
        )
        .order_by(ContactIdentity.id.desc())
        .limit(1)
    )


def mark_verified(session: Session, identity_ids: list[int], via: str) -> None:
    """Record who vouched for these identities (the first voucher is kept)."""
    if identity_ids:
        session.execute(
            update(ContactIdentity)
            .where(ContactIdentity.id.in_(identity_ids), ContactIdentity.verified_at.is_(None))
            .values(verified_at=func.now(), verified_via=via[:32])
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
    anchor = next((i for i in identities if i[0] == IdentityKind.WEBCHAT.value), None)
    if anchor is not None:
        return _find_or_create_visitor(session, details, anchor, identities)

    rows = session.execute(
        select(
            ContactIdentity.id,
            ContactIdentity.kind,
            ContactIdentity.value,
            ContactIdentity.contact_id,
            ContactIdentity.verified_at,
        ).where(tuple_(ContactIdentity.kind, ContactIdentity.value).in_(identities))
    ).all()
    by_identity = {(r.kind, r.value): r.contact_id for r in rows}
    vouched = {i: via for i, via in details.verified.items() if i in identities}

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
    # An existing contact takes only identities someone vouched for; a new
    # contact takes all it was created with (nobody else's address is involved).
    held = [] if created else [i for i in missing if i not in vouched]
    attach = [i for i in missing if i not in held]
    _insert_identities(session, contact_id, attach, vouched)

    # Identities that already existed and are now vouched for.
    for via in set(vouched.values()):
        mark_verified(
            session,
            [r.id for r in rows if r.verified_at is None and vouched.get((r.kind, r.value)) == via],
            via,
        )

    others = matched[1:]
    held_apart = None
    if held:
        held_apart = uuid.uuid4()
        session.add(
            Contact(id=held_apart, name=details.name, source=details.source,
                    last_channel=details.channel)
        )
        session.flush()
        _insert_identities(session, held_apart, held, vouched)
        session.execute(
            insert(MergeCandidate)
            .values(
                contact_id=contact_id,
                other_contact_id=held_apart,
                reason="an unverified message named this contact beside a new address; "
                "the address was kept apart",
            )
            .on_conflict_do_nothing(constraint="uq_merge_pair")
        )
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
    owner = {**by_identity, **dict.fromkeys(attach, contact_id)}
    sender_verified = any(
        owner.get(i) is not None and _resolve_merged(session, owner[i]) == contact_id
        for i in vouched
    )
    return ContactMatch(
        contact_id=contact_id,
        created=created,
        merge_candidates=others + ([held_apart] if held_apart else []),
        sender_verified=sender_verified,
        held_apart=held_apart,
    )


def _find_or_create_visitor(
    session: Session,
    details: ContactDetails,
    anchor: tuple[str, str],
    identities: list[tuple[str, str]],
) -> ContactMatch:
    """A website-widget visitor (shared/inbox/webchat.py): the inbox's id for
    them alone names the contact; the e-mail or phone they typed is a claim.
    A claim nobody has is kept on the visitor's contact, unverified; one that
    belongs to another contact stays there and a merge candidate is recorded —
    the visitor never acts for, nor reads as, that patient. Never verified."""
    rows = session.execute(
        select(ContactIdentity.kind, ContactIdentity.value, ContactIdentity.contact_id)
        .where(tuple_(ContactIdentity.kind, ContactIdentity.value).in_(identities))
    ).all()
    owner = {(r.kind, r.value): r.contact_id for r in rows}
    created = anchor not in owner
    if created:
        contact_id = uuid.uuid4()
        session.add(Contact(id=contact_id, name=details.name, source=details.source,
                            last_channel=details.channel))
        session.flush()
        _insert_identities(session, contact_id, [anchor], {})
    else:
        contact_id = _resolve_merged(session, owner[anchor])
        _fill_blanks(session, contact_id, details)
    others: list[uuid.UUID] = []
    unclaimed = [i for i in identities if i != anchor and i not in owner]
    _insert_identities(session, contact_id, unclaimed, {})
    for identity in identities:
        if identity == anchor or identity not in owner:
            continue
        other = _resolve_merged(session, owner[identity])
        if other == contact_id or other in others:
            continue
        others.append(other)
        session.execute(
            insert(MergeCandidate)
            .values(
                contact_id=other,
                other_contact_id=contact_id,
                reason="a website-chat visitor typed this contact's "
                f"{identity[0]}; unverified, kept apart",
            )
            .on_conflict_do_nothing(constraint="uq_merge_pair")
        )
    return ContactMatch(contact_id=contact_id, created=created, merge_candidates=others)


def _insert_identities(
    session: Session,
    contact_id: uuid.UUID,
    identities: list[tuple[str, str]],
    vouched: dict[tuple[str, str], str],
) -> None:
    if not identities:
        return
    session.execute(
        insert(ContactIdentity)
        .values(
            [
                {
                    "contact_id": contact_id,
                    "kind": k,
                    "value": v,
                    "verified_at": func.now() if (k, v) in vouched else None,
                    "verified_via": vouched[(k, v)][:32] if (k, v) in vouched else None,
                }
                for k, v in identities
            ]
        )
        .on_conflict_do_nothing(index_elements=["kind", "value"])
    )


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
    contact: dict[str, object],
    channel: str,
    source: str,
    payload_attested: list[Any] | None = None,
) -> ContactDetails:
    """The inbound task payload's `contact` block → ContactDetails;
    `payload_attested` is the payload's `attested` list (what the channel
    vouches for: `[{"kind", "value", "via"}]`)."""
    payload_attested = payload_attested or []
    identities: list[tuple[str, str]] = []
    if isinstance(contact.get("phone"), str):
        identities.append((IdentityKind.PHONE.value, str(contact["phone"])))
    if isinstance(contact.get("email"), str):
        identities.append((IdentityKind.EMAIL.value, str(contact["email"])))
    for kind in (
        IdentityKind.CHATWOOT.value,
        IdentityKind.ROCKETCHAT.value,
        IdentityKind.WEBCHAT.value,
        IdentityKind.PSID.value,
        IdentityKind.IGSID.value,
        IdentityKind.TELEGRAM.value,
    ):
        if isinstance(contact.get(kind), str):
            identities.append((kind, str(contact[kind])))
    verified: dict[tuple[str, str], str] = {}
    # What the channel itself vouches for (set by ingest's parsers, never by
    # the sender): only identities this message's contact block names.
    for entry in payload_attested:
        if isinstance(entry, dict):
            identity = (str(entry.get("kind")), str(entry.get("value")))
            if identity in identities:
                verified[identity] = str(entry.get("via") or source)
    return ContactDetails(
        identities=identities,
        verified=verified,
        name=contact.get("name") if isinstance(contact.get("name"), str) else None,  # type: ignore[arg-type]
        cpf_hash=contact.get("cpf_hash"),  # type: ignore[arg-type]
        cpf_masked=contact.get("cpf_masked"),  # type: ignore[arg-type]
        cpf_clear=contact.get("cpf"),  # type: ignore[arg-type]
        source=source,
        channel=channel,
    )
