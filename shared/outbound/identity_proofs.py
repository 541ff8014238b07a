"""Proof of address: the patient shows an address is theirs by following a
link sent to it.

An address that arrived unverified (typed into the public form, an e-mail no
server authenticated) is kept apart from the patient (shared/contacts/directory.py).
When the team wants to know whether it really is the patient's, an API-key
caller asks for a proof: a random single-use link (256-bit token, only its
SHA-256 stored, valid IDENTITY_PROOF_TTL_HOURS) is sent to that address by
SMS or e-mail (template `verificar_endereco`). Opening the link changes
nothing — mail scanners and link previews fetch links — it shows a button;
the button's POST marks the identity verified (`verified_via = 'proof:<channel>'`)
and spends the link. Merging the contacts stays the team's decision.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from shared.contacts.directory import mark_verified
from shared.core.config import Settings
from shared.core.enums import IdentityKind
from shared.core.errors import FieldError
from shared.core.models import Contact, ContactIdentity, IdentityProof
from shared.outbound.create import OutboundRequest, create_outbound_message

TOKEN_BYTES = 32
_CHANNEL_OF_KIND = {IdentityKind.EMAIL.value: "email", IdentityKind.PHONE.value: "sms"}


class ProofError(FieldError):
    """A proof request that cannot be made; `field` names what is wrong
    (`status` 404 when it names no contact or identity)."""


@dataclass
class ProofRequested:
    already_verified: bool
    message_id: uuid.UUID | None = None
    channel: str | None = None
    expires_at: datetime | None = None
    enqueue: bool = False


@dataclass
class ProofOutcome:
    ok: bool
    reason: str  # verified | unknown | used | expired


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def proof_link(settings: Settings, token: str) -> str:
    return f"{settings.PUBLIC_BASE_URL.rstrip('/')}/verify/{token}"


def request_proof(
    session: Session,
    contact_id: uuid.UUID,
    kind: str,
    value: str,
    requested_by: str,
    settings: Settings,
    now: datetime,
) -> ProofRequested:
    """Send a proof link to the contact's identity (kind, value). The caller
    enqueues the send after commit when `enqueue` is set."""
    channel = _CHANNEL_OF_KIND.get(kind)
    if channel is None:
        raise ProofError("must be phone or email", "kind")
    contact = session.get(Contact, contact_id)
    if contact is None or contact.erased_at is not None:
        raise ProofError("no contact with this id", "contact_id", 404)
    identity = session.scalars(
        select(ContactIdentity)
        .where(
            ContactIdentity.contact_id == contact_id,
            ContactIdentity.kind == kind,
            ContactIdentity.value == value,
        )
        .with_for_update()
    ).first()
    if identity is None:
        raise ProofError("the contact has no such identity", "value", 404)
    if identity.verified_at is not None:
        return ProofRequested(already_verified=True)

    token = secrets.token_urlsafe(TOKEN_BYTES)
    expires_at = now + timedelta(hours=settings.IDENTITY_PROOF_TTL_HOURS)
    proof = IdentityProof(
        identity_id=identity.id,
        token_hash=token_hash(token),
        requested_by=requested_by[:64],
        expires_at=expires_at,
    )
    session.add(proof)
    session.flush()
    created = create_outbound_message(
        session,
        OutboundRequest(
            channel=channel,
            to_address=value,
            contact_id=contact_id,
            template="verificar_endereco",
            template_data={"link": proof_link(settings, token)},
            purpose="verification",
            idempotency_key=f"identity-proof:{proof.id}",
            metadata={"identity_proof_id": proof.id},
        ),
    )
    return ProofRequested(
        already_verified=False,
        message_id=created.message_id,
        channel=channel,
        expires_at=expires_at,
        enqueue=created.should_enqueue,
    )


def confirm_proof(session: Session, token: str, now: datetime) -> ProofOutcome:
    """Spend the link: mark its identity verified. Single use."""
    proof = session.scalars(
        select(IdentityProof).where(IdentityProof.token_hash == token_hash(token)).with_for_update()
    ).first()
    if proof is None:
        return ProofOutcome(False, "unknown")
    if proof.used_at is not None:
        return ProofOutcome(False, "used")
    if proof.expires_at <= now:
        return ProofOutcome(False, "expired")
    proof.used_at = now
    identity = session.get(ContactIdentity, proof.identity_id)
    assert identity is not None  # the proof row cascades with its identity
    mark_verified(session, [identity.id], f"proof:{_CHANNEL_OF_KIND[identity.kind]}")
    return ProofOutcome(True, "verified")
