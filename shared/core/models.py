"""The PostgreSQL schema (SQLAlchemy 2). Alembic migrations mirror this file.

PostgreSQL is the source of truth (rule 2). Uniqueness that makes the flow
race-free lives in indexes here, not in application checks:
- contact_identities(kind, value): one contact per phone / email;
- conversations(contact_id) WHERE status='active': one active conversation;
- messages.id made at ingest: a redelivered task inserts nothing new;
- messages(provider, provider_message_id), processed_events(source, event_id):
  provider retries change nothing;
- scheduled_messages(appointment_id, kind): a reminder exists once.
"""

from __future__ import annotations

import secrets
import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    Numeric,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

TZ = DateTime(timezone=True)


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSONB, uuid.UUID: UUID(as_uuid=True)}


def _now() -> Any:
    return mapped_column(TZ, nullable=False, server_default=func.now())


class Contact(Base):
    __tablename__ = "contacts"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    name: Mapped[str | None] = mapped_column(Text)
    # CPF: keyed hash for lookups + masked form for display; clear only when
    # STORE_CPF_CLEAR is configured (ARCHITECTURE rule 9).
    cpf_hash: Mapped[str | None] = mapped_column(String(64), index=True)
    cpf_masked: Mapped[str | None] = mapped_column(String(14))
    cpf_clear: Mapped[str | None] = mapped_column(String(11))
    source: Mapped[str | None] = mapped_column(String(32))
    preferred_channel: Mapped[str | None] = mapped_column(String(16))
    last_channel: Mapped[str | None] = mapped_column(String(16))
    merged_into_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("contacts.id"))
    erased_at: Mapped[datetime | None] = mapped_column(TZ)
    # Random, made on the first post to the agent inbox: the Rocket.Chat
    # visitor token / Chatwoot source_id (a bearer credential there, so never
    # derived from the contact id, which status URLs and webhooks carry).
    inbox_token: Mapped[str | None] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = _now()
    updated_at: Mapped[datetime] = _now()


class ContactIdentity(Base):
    __tablename__ = "contact_identities"
    __table_args__ = (UniqueConstraint("kind", "value", name="uq_identity_kind_value"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    contact_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("contacts.id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[str] = mapped_column(String(16))
    value: Mapped[str] = mapped_column(String(320))
    # Rule 11: who vouched that this address is the patient's. NULL: nobody
    # (a public form, an unauthenticated e-mail) — such an identity never
    # outranks a verified one as a delivery address.
    verified_at: Mapped[datetime | None] = mapped_column(TZ)
    verified_via: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = _now()


class IdentityProof(Base):
    """A single-use link sent to an address: following it (and pressing the
    button, a POST) proves the patient receives mail/SMS there. Only the
    SHA-256 of the link's token is stored."""

    __tablename__ = "identity_proofs"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    identity_id: Mapped[int] = mapped_column(
        ForeignKey("contact_identities.id", ondelete="CASCADE"), index=True
    )
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    requested_by: Mapped[str] = mapped_column(String(64))
    expires_at: Mapped[datetime] = mapped_column(TZ)
    used_at: Mapped[datetime | None] = mapped_column(TZ)
    created_at: Mapped[datetime] = _now()


class MergeCandidate(Base):
    """Two contacts that one inbound message's identities both matched."""

    __tablename__ = "merge_candidates"
    __table_args__ = (
        UniqueConstraint("contact_id", "other_contact_id", name="uq_merge_pair"),
        CheckConstraint("contact_id <> other_contact_id", name="ck_merge_distinct"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    contact_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("contacts.id", ondelete="CASCADE"))
    other_contact_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("contacts.id", ondelete="CASCADE")
    )
    reason: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), server_default="open")
    created_at: Mapped[datetime] = _now()


class Conversation(Base):
    __tablename__ = "conversations"
    __table_args__ = (
        Index("ix_conversations_last_message", text("last_message_at DESC NULLS LAST")),
        Index(
            "ix_conversations_urgency_recent",
            "last_inbound_urgency",
            text("last_message_at DESC NULLS LAST"),
        ),
        Index(
            "ix_conversations_intent_recent",
            "last_inbound_intent",
            text("last_message_at DESC NULLS LAST"),
        ),
        Index(
            "uq_one_active_conversation",
            "contact_id",
            unique=True,
            postgresql_where=text("status = 'active'"),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    contact_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("contacts.id", ondelete="CASCADE"), index=True
    )
    channel: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), server_default="active")
    needs_agent: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    assignee: Mapped[str | None] = mapped_column(Text)
    inbox_provider: Mapped[str | None] = mapped_column(String(16))
    inbox_conversation_id: Mapped[str | None] = mapped_column(String(64))
    last_inbound_at: Mapped[datetime | None] = mapped_column(TZ)
    last_message_at: Mapped[datetime | None] = mapped_column(TZ)
    # The triage of the last inbound message (NULL until it is triaged), kept
    # by shared/contacts/conversations.py refresh_last_inbound_triage: the
    # console lists and filters conversations by it through an index.
    last_inbound_intent: Mapped[str | None] = mapped_column(String(64))
    last_inbound_urgency: Mapped[str | None] = mapped_column(String(16))
    created_at: Mapped[datetime] = _now()
    closed_at: Mapped[datetime | None] = mapped_column(TZ)


class Message(Base):
    __tablename__ = "messages"
    __table_args__ = (
        UniqueConstraint("provider", "provider_message_id", name="uq_provider_message"),
        UniqueConstraint("idempotency_key", name="uq_message_idempotency_key"),
        Index("ix_messages_conversation_created", "conversation_id", "created_at"),
        # The reconciler's scan: only messages not in a final state.
        Index(
            "ix_messages_unsettled",
            "status",
            "updated_at",
            postgresql_where=text("status IN ('queued', 'sending', 'unknown')"),
        ),
        # The react re-drive scan: filed inbound messages whose reaction never ran.
        Index(
            "ix_messages_unreacted",
            "created_at",
            postgresql_where=text("direction = 'inbound' AND reacted_at IS NULL"),
        ),
        # Console reports window on created_at; the board finds the messages
        # about an appointment (requests, confirmations) by its metadata.
        Index("ix_messages_created_at", "created_at"),
        Index(
            "ix_messages_appointment",
            text("(metadata->>'appointment_id')"),
            postgresql_where=text("metadata ? 'appointment_id'"),
        ),
        Index(
            "ix_messages_subject_contact_id",
            "subject_contact_id",
            postgresql_where=text("subject_contact_id IS NOT NULL"),
        ),
        # The on-call alert failover scan (scheduler/failover.py): only
        # messages that carry a failover chain.
        Index(
            "ix_messages_failover_chain",
            "created_at",
            postgresql_where=text("metadata ? 'failover_channels'"),
        ),
        # The console's attention lists and urgency filter (migration 0017):
        # only the rows those screens can show.
        Index(
            "ix_messages_outbound_problems",
            "created_at",
            postgresql_where=text("direction = 'outbound' AND status IN ('failed', 'unknown')"),
        ),
        Index(
            "ix_messages_inbound_urgent",
            "created_at",
            postgresql_where=text(
                "direction = 'inbound' AND "
                "(triage->>'urgency') IN ('emergency', 'very_urgent', 'urgent')"
            ),
        ),
        Index(
            "ix_messages_inbound_conversation",
            "conversation_id",
            "created_at",
            postgresql_where=text("direction = 'inbound'"),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    conversation_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("conversations.id", ondelete="SET NULL")
    )
    contact_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("contacts.id", ondelete="SET NULL"), index=True
    )
    # The patient a team-facing message (alert, on-call SMS, patient request)
    # is about: it goes to staff (contact_id NULL) but quotes the patient, and
    # erasure finds it by this.
    subject_contact_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("contacts.id", ondelete="SET NULL", name="fk_messages_subject_contact_id")
    )
    channel: Mapped[str] = mapped_column(String(16))
    direction: Mapped[str] = mapped_column(String(8))
    # What the message is for: patient, auto_reply, alert, reminder, agent_reply…
    purpose: Mapped[str] = mapped_column(String(32), server_default="patient")
    to_address: Mapped[str | None] = mapped_column(String(320))
    text: Mapped[str | None] = mapped_column(Text)
    subject: Mapped[str | None] = mapped_column(Text)
    template: Mapped[str | None] = mapped_column(String(64))
    template_data: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    metadata_: Mapped[dict[str, Any] | None] = mapped_column("metadata", JSONB)
    triage: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    status: Mapped[str] = mapped_column(String(16))
    status_reason: Mapped[str | None] = mapped_column(Text)
    provider: Mapped[str | None] = mapped_column(String(32))
    provider_message_id: Mapped[str | None] = mapped_column(String(128))
    idempotency_key: Mapped[str | None] = mapped_column(String(255))
    error_code: Mapped[str | None] = mapped_column(String(32))
    attempts: Mapped[int] = mapped_column(Integer, server_default="0")
    cost: Mapped[Decimal | None] = mapped_column(Numeric(10, 4))
    cost_currency: Mapped[str | None] = mapped_column(String(3))
    # True: `cost` is our per-channel estimate; False: the provider's price.
    cost_estimated: Mapped[bool | None] = mapped_column(Boolean)
    sent_at_provider: Mapped[datetime | None] = mapped_column(TZ)  # patient's timestamp
    # Inbound only: the channel vouched that the sender is this contact (a
    # Twilio/Meta number, an e-mail with DMARC/aligned DKIM pass). Only such
    # messages may act for the patient (confirm, cancel, opt out…).
    sender_verified: Mapped[bool | None] = mapped_column(Boolean)
    created_at: Mapped[datetime] = _now()
    updated_at: Mapped[datetime] = _now()
    sent_at: Mapped[datetime | None] = mapped_column(TZ)
    delivered_at: Mapped[datetime | None] = mapped_column(TZ)
    read_at: Mapped[datetime | None] = mapped_column(TZ)
    # Inbound only: when the reaction (replies that act, triage, automations,
    # inbox hand-off) committed. NULL on a filed inbound message means its
    # reaction never ran: the reconciler re-drives it (shared/inbound/react_redrive.py).
    reacted_at: Mapped[datetime | None] = mapped_column(TZ)


class MessageEvent(Base):
    """Append-only status history with raw payloads (the seed's message_logs)."""

    __tablename__ = "message_events"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    message_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("messages.id", ondelete="CASCADE"), index=True
    )
    event: Mapped[str] = mapped_column(String(32))
    status_from: Mapped[str | None] = mapped_column(String(16))
    status_to: Mapped[str | None] = mapped_column(String(16))
    detail: Mapped[str | None] = mapped_column(Text)
    payload: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    created_at: Mapped[datetime] = _now()


class ProcessedEvent(Base):
    """Dedupe ledger for provider deliveries (Chatwoot ids, Meta status ids…)."""

    __tablename__ = "processed_events"

    source: Mapped[str] = mapped_column(String(32), primary_key=True)
    event_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    created_at: Mapped[datetime] = _now()


class WebhookConfig(Base):
    """Known webhook senders. Secrets are NOT stored (they live in the
    environment); only a fingerprint so ops can tell which secret a sender uses
    during a rotation."""

    __tablename__ = "webhooks_config"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    secret_fingerprints: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    active: Mapped[bool] = mapped_column(Boolean, server_default=text("true"))
    created_at: Mapped[datetime] = _now()


class ChannelSetting(Base):
    __tablename__ = "channel_settings"

    channel: Mapped[str] = mapped_column(String(16), primary_key=True)
    provider: Mapped[str] = mapped_column(String(32))
    sender: Mapped[str | None] = mapped_column(String(64))
    rate_limit_per_second: Mapped[Decimal | None] = mapped_column(Numeric(10, 4))
    burst: Mapped[int | None] = mapped_column(Integer)
    enabled: Mapped[bool] = mapped_column(Boolean, server_default=text("true"))
    updated_at: Mapped[datetime] = _now()


class ApiKey(Base):
    """REST API keys, stored as SHA-256 of a 256-bit random key (no clear).

    `scopes` (shared/core/api_keys.py SCOPES) say what the key may do; one active
    (not revoked) key per name, so `clinicq revoke-api-key NAME` is exact."""

    __tablename__ = "api_keys"
    __table_args__ = (
        CheckConstraint(
            "scopes <@ ARRAY['intake', 'send', 'read', 'admin']::varchar[]",
            name="ck_api_keys_scopes",
        ),
        Index(
            "uq_api_keys_active_name",
            "name",
            unique=True,
            postgresql_where=text("revoked_at IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    scopes: Mapped[list[str]] = mapped_column(
        ARRAY(String(16)), server_default=text("'{}'::varchar[]")
    )
    created_at: Mapped[datetime] = _now()
    last_used_at: Mapped[datetime | None] = mapped_column(TZ)
    revoked_at: Mapped[datetime | None] = mapped_column(TZ)


class Appointment(Base):
    __tablename__ = "appointments"
    __table_args__ = (Index("ix_appointments_starts_at", "starts_at"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    external_id: Mapped[str] = mapped_column(String(128), unique=True)
    contact_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("contacts.id", ondelete="CASCADE"), index=True
    )
    professional: Mapped[str | None] = mapped_column(Text)
    location: Mapped[str | None] = mapped_column(Text)
    address: Mapped[str | None] = mapped_column(Text)
    starts_at: Mapped[datetime] = mapped_column(TZ)
    duration_minutes: Mapped[int] = mapped_column(Integer, server_default="30")
    timezone: Mapped[str] = mapped_column(String(64))
    notes: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), server_default="scheduled")
    version: Mapped[int] = mapped_column(Integer, server_default="1")
    # The secret half of the self-service link's token (shared/core/tokens.py):
    # revoking the link draws a new one. Random, never derived from the id.
    link_nonce: Mapped[str] = mapped_column(
        String(32),
        default=lambda: secrets.token_hex(16),
        server_default=text("replace(gen_random_uuid()::text, '-', '')"),
    )
    created_at: Mapped[datetime] = _now()
    updated_at: Mapped[datetime] = _now()


class ScheduledMessage(Base):
    __tablename__ = "scheduled_messages"
    __table_args__ = (
        UniqueConstraint("appointment_id", "kind", name="uq_scheduled_appointment_kind"),
        # The scheduler's due-rows scan touches pending rows only, so its cost
        # follows due work, not table size.
        Index(
            "ix_scheduled_pending_due",
            "due_at",
            postgresql_where=text("status = 'pending'"),
        ),
        # Deleting a message (LGPD erasure) sets this column to NULL through
        # the FK: without an index that is a full scan of the table per message.
        Index(
            "ix_scheduled_message_id",
            "message_id",
            postgresql_where=text("message_id IS NOT NULL"),
        ),
        # The failover scan: rows whose latest message may need a fallback.
        Index(
            "ix_scheduled_fallback_watching",
            "id",
            postgresql_where=text("fallback_state = 'watching'"),
        ),
        Index(
            "ix_scheduled_fallback_message_id",
            "fallback_message_id",
            postgresql_where=text("fallback_message_id IS NOT NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    appointment_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("appointments.id", ondelete="CASCADE")
    )
    kind: Mapped[str] = mapped_column(String(32))
    channel: Mapped[str] = mapped_column(String(16))
    template: Mapped[str] = mapped_column(String(64))
    due_at: Mapped[datetime] = mapped_column(TZ)
    status: Mapped[str] = mapped_column(String(16), server_default="pending")
    reason: Mapped[str | None] = mapped_column(Text)
    appointment_version: Mapped[int] = mapped_column(Integer, server_default="1")
    message_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("messages.id", ondelete="SET NULL")
    )
    claimed_at: Mapped[datetime | None] = mapped_column(TZ)
    created_at: Mapped[datetime] = _now()
    updated_at: Mapped[datetime] = _now()
    # Failover (scheduler/failover.py): the channels still to try after
    # `channel`, comma-separated, fixed when the row is planned; NULL = none.
    fallback_channels: Mapped[str | None] = mapped_column(String(128))
    # watching (the latest message may still need its next channel) | sent
    # (the last fallback went out) | delivered | skipped (reason) | none
    # (failed without a failover code / ended otherwise); NULL = no chain.
    fallback_state: Mapped[str | None] = mapped_column(String(16))
    # The latest fallback message; its idempotency key
    # `fallback:<row>:v<version>:<channel>` is unique, so each exists once.
    fallback_message_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("messages.id", ondelete="SET NULL")
    )
    # Not before this instant (a deadline that fell in quiet hours).
    fallback_due_at: Mapped[datetime | None] = mapped_column(TZ)
    # Why the fallback went out or did not (e.g. `fallback_skipped: opted_out`).
    fallback_reason: Mapped[str | None] = mapped_column(Text)


class OptOut(Base):
    __tablename__ = "opt_outs"
    __table_args__ = (
        Index(
            "uq_active_opt_out",
            "contact_id",
            "channel",
            unique=True,
            postgresql_where=text("revoked_at IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    contact_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("contacts.id", ondelete="CASCADE"))
    channel: Mapped[str] = mapped_column(String(16))  # a Channel or 'all'
    keyword: Mapped[str | None] = mapped_column(String(64))
    source: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = _now()
    revoked_at: Mapped[datetime | None] = mapped_column(TZ)


class AutomationRun(Base):
    """At most once per conversation per window: the unique key is the guard."""

    __tablename__ = "automation_runs"
    __table_args__ = (
        UniqueConstraint("conversation_id", "automation", "window_key", name="uq_automation_run"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    conversation_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("conversations.id", ondelete="CASCADE")
    )
    automation: Mapped[str] = mapped_column(String(64))
    window_key: Mapped[str] = mapped_column(String(64))
    message_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("messages.id", ondelete="SET NULL")
    )
    created_at: Mapped[datetime] = _now()


class MailboxState(Base):
    """IMAP polling position: each message fetched once (UID tracking)."""

    __tablename__ = "mailbox_state"

    mailbox: Mapped[str] = mapped_column(String(255), primary_key=True)
    uidvalidity: Mapped[int | None] = mapped_column(BigInteger)
    last_uid: Mapped[int] = mapped_column(BigInteger, server_default="0")
    updated_at: Mapped[datetime] = _now()


class AuditEvent(Base):
    """Who did what (LGPD). Subjects are referenced pseudonymously."""

    __tablename__ = "audit_events"
    __table_args__ = (Index("ix_audit_events_created", "created_at"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    actor: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(64))
    subject: Mapped[str] = mapped_column(String(128))
    detail: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    created_at: Mapped[datetime] = _now()


class DeadLetter(Base):
    """A task that gave up (ARCHITECTURE rule 12): kept, visible, replayable.

    `args`/`kwargs` are what replay re-publishes; they may hold patient data
    (an inbound payload), so they are never logged, are cleared once the task
    is replayed, and are erased with the contact (`message_id` links them).
    """

    __tablename__ = "dead_letters"
    __table_args__ = (
        Index("ix_dead_letters_open", "created_at", postgresql_where=text("replayed_at IS NULL")),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    task_name: Mapped[str] = mapped_column(String(128))
    task_id: Mapped[str | None] = mapped_column(String(64))
    queue: Mapped[str | None] = mapped_column(String(32))
    # The message the task was about, when its arguments name one.
    message_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True), index=True)
    args: Mapped[list[Any] | None] = mapped_column(JSONB)
    kwargs: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    error_class: Mapped[str] = mapped_column(String(128))
    # Why it gave up, PII-masked (shared.core.pii.redact) and bounded.
    reason: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = _now()
    replayed_at: Mapped[datetime | None] = mapped_column(TZ)
    replay_count: Mapped[int] = mapped_column(Integer, server_default="0")


class WaitlistEntry(Base):
    """A patient waiting for an earlier slot (POST /api/waitlist): with whom or
    where, in which window, how urgently (higher `priority` is offered first)."""

    __tablename__ = "waitlist_entries"
    __table_args__ = (
        Index(
            "ix_waitlist_entries_waiting",
            "priority",
            "created_at",
            postgresql_where=text("status = 'waiting'"),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    external_id: Mapped[str] = mapped_column(String(128), unique=True)
    contact_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("contacts.id", ondelete="CASCADE"), index=True
    )
    professional: Mapped[str | None] = mapped_column(Text)
    location: Mapped[str | None] = mapped_column(Text)
    window_from: Mapped[datetime] = mapped_column(TZ)
    window_to: Mapped[datetime] = mapped_column(TZ)
    priority: Mapped[int] = mapped_column(Integer, server_default="0")
    # waiting | claimed (won a slot) | removed (DELETE)
    status: Mapped[str] = mapped_column(String(16), server_default="waiting")
    created_at: Mapped[datetime] = _now()
    updated_at: Mapped[datetime] = _now()


class WaitlistSlot(Base):
    """A slot freed by a cancellation far enough ahead, being offered."""

    __tablename__ = "waitlist_slots"
    __table_args__ = (
        Index("ix_waitlist_slots_open", "next_run_at", postgresql_where=text("status = 'open'")),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    # The cancelled appointment whose time this is (once: unique).
    appointment_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("appointments.id", ondelete="CASCADE"), unique=True
    )
    professional: Mapped[str | None] = mapped_column(Text)
    location: Mapped[str | None] = mapped_column(Text)
    starts_at: Mapped[datetime] = mapped_column(TZ)
    duration_minutes: Mapped[int] = mapped_column(Integer)
    timezone: Mapped[str] = mapped_column(String(64))
    # open | claimed | unfilled (nobody left, or too close to the visit)
    status: Mapped[str] = mapped_column(String(16), server_default="open")
    next_run_at: Mapped[datetime] = mapped_column(TZ)
    created_at: Mapped[datetime] = _now()
    updated_at: Mapped[datetime] = _now()


class WaitlistOffer(Base):
    """One slot offered to one waiting patient. The partial unique index on
    (slot_id) WHERE status = 'claimed' makes exactly one claim per slot win,
    whatever the timing (shared/inbound/waitlist.py)."""

    __tablename__ = "waitlist_offers"
    __table_args__ = (
        UniqueConstraint("slot_id", "entry_id", name="uq_waitlist_offer_slot_entry"),
        Index(
            "uq_waitlist_offer_one_claim",
            "slot_id",
            unique=True,
            postgresql_where=text("status = 'claimed'"),
        ),
        Index("ix_waitlist_offers_contact", "contact_id", "status"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    slot_id: Mapped[int] = mapped_column(ForeignKey("waitlist_slots.id", ondelete="CASCADE"))
    entry_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("waitlist_entries.id", ondelete="CASCADE")
    )
    contact_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("contacts.id", ondelete="CASCADE"))
    # offered | claimed | taken (someone else won) | expired
    status: Mapped[str] = mapped_column(String(16), server_default="offered")
    channel: Mapped[str] = mapped_column(String(16))
    expires_at: Mapped[datetime] = mapped_column(TZ)
    answered_at: Mapped[datetime | None] = mapped_column(TZ)
    created_at: Mapped[datetime] = _now()


class ConsoleUser(Base):
    """A member of staff who signs in to the console (console/)."""

    __tablename__ = "console_users"
    __table_args__ = (
        CheckConstraint(
            "role IN ('admin', 'frontdesk', 'clinical')", name="ck_console_users_role"
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))  # argon2id
    role: Mapped[str] = mapped_column(String(16))
    failed_logins: Mapped[int] = mapped_column(Integer, server_default="0")
    locked_until: Mapped[datetime | None] = mapped_column(TZ)
    # Bumped by "log out everywhere": sessions of an older epoch are dead.
    session_epoch: Mapped[int] = mapped_column(Integer, server_default="0")
    disabled_at: Mapped[datetime | None] = mapped_column(TZ)
    created_at: Mapped[datetime] = _now()


class ConsoleSession(Base):
    """A server-side console session; the cookie holds a random id whose
    SHA-256 is the key here (a database leak gives no usable cookie)."""

    __tablename__ = "console_sessions"

    id_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(
        ForeignKey("console_users.id", ondelete="CASCADE"), index=True
    )
    epoch: Mapped[int] = mapped_column(Integer)
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = _now()
    last_seen_at: Mapped[datetime] = _now()
    expires_at: Mapped[datetime] = mapped_column(TZ)
# --- outbound webhooks (the booking system told of changes) ----------------------------
#
# shared/core/webhook_events.py writes an event and its deliveries in the
# transaction of the change that caused it (the outbox);
# shared/outbound/webhook_delivery.py delivers them. One delivery row per
# (event, endpoint): its own attempts, schedule and outcome.


class WebhookEndpoint(Base):
    """A receiver the clinic registered (`/api/webhook-endpoints`).

    The signing secret must be usable to sign, so it cannot be stored hashed:
    it is stored encrypted (Fernet, key derived from SECRET_KEY —
    shared/core/webhook_endpoints.py). `previous_secret_encrypted` keeps the
    secret a rotation replaced valid (deliveries carry both signatures) until
    `previous_secret_expires_at`."""

    __tablename__ = "webhook_endpoints"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    url: Mapped[str] = mapped_column(String(2048))
    description: Mapped[str | None] = mapped_column(String(200))
    event_types: Mapped[list[str]] = mapped_column(ARRAY(String(64)))
    secret_encrypted: Mapped[str] = mapped_column(Text)
    previous_secret_encrypted: Mapped[str | None] = mapped_column(Text)
    previous_secret_expires_at: Mapped[datetime | None] = mapped_column(TZ)
    enabled: Mapped[bool] = mapped_column(Boolean, server_default=text("true"))
    disabled_reason: Mapped[str | None] = mapped_column(String(500))
    disabled_at: Mapped[datetime | None] = mapped_column(TZ)
    # Start of the current run of failed attempts (NULL after a success):
    # WEBHOOK_ENDPOINT_DISABLE_AFTER of it disables the endpoint.
    failing_since: Mapped[datetime | None] = mapped_column(TZ)
    created_at: Mapped[datetime] = _now()
    updated_at: Mapped[datetime] = _now()
    rotated_at: Mapped[datetime | None] = mapped_column(TZ)


class WebhookEvent(Base):
    """One thing that happened, as the receiver sees it. `id` is the
    `webhook-id` header on every delivery and retry of it (`evt_…`)."""

    __tablename__ = "webhook_events"
    __table_args__ = (Index("ix_webhook_events_created_at", "created_at"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    # Commit-independent order of recording (per ordering key, what the
    # delivery respects).
    seq: Mapped[int] = mapped_column(BigInteger, Identity(), unique=True)
    type: Mapped[str] = mapped_column(String(64))
    version: Mapped[int] = mapped_column(Integer)
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB)
    ordering_key: Mapped[str | None] = mapped_column(String(128))
    # The caller's dedupe key: a handler that runs twice records one event.
    idempotency_key: Mapped[str | None] = mapped_column(String(200), unique=True)
    created_at: Mapped[datetime] = _now()


class WebhookDelivery(Base):
    """An event owed to one endpoint: pending → delivered | failed."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        UniqueConstraint("event_id", "endpoint_id", name="uq_webhook_delivery_event_endpoint"),
        # The sweep's scan: pending rows only.
        Index(
            "ix_webhook_deliveries_pending_due",
            "next_attempt_at",
            postgresql_where=text("status = 'pending'"),
        ),
        # The ordering check: an earlier pending delivery of the same key.
        Index(
            "ix_webhook_deliveries_pending_order",
            "endpoint_id",
            "ordering_key",
            "event_seq",
            postgresql_where=text("status = 'pending' AND ordering_key IS NOT NULL"),
        ),
        Index("ix_webhook_deliveries_status_updated", "status", "updated_at"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    event_id: Mapped[str] = mapped_column(
        ForeignKey("webhook_events.id", ondelete="CASCADE"), index=True
    )
    endpoint_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("webhook_endpoints.id", ondelete="CASCADE"), index=True
    )
    # Copied from the event so the ordering check needs no join.
    event_seq: Mapped[int] = mapped_column(BigInteger)
    ordering_key: Mapped[str | None] = mapped_column(String(128))
    status: Mapped[str] = mapped_column(String(16), server_default="pending")
    attempts: Mapped[int] = mapped_column(Integer, server_default="0")
    next_attempt_at: Mapped[datetime] = _now()
    # A worker holds the delivery until then (its request in flight); past
    # it, a worker that died is presumed dead and the delivery is due again.
    locked_until: Mapped[datetime | None] = mapped_column(TZ)
    # Retries stop after this (WEBHOOK_DELIVERY_MAX_AGE from creation or replay).
    retry_until: Mapped[datetime] = mapped_column(TZ)
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(String(500))
    delivered_at: Mapped[datetime | None] = mapped_column(TZ)
    created_at: Mapped[datetime] = _now()
    updated_at: Mapped[datetime] = _now()


class WebhookAttempt(Base):
    """One HTTP request of a delivery: what came back, how long it took."""

    __tablename__ = "webhook_attempts"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    delivery_id: Mapped[int] = mapped_column(
        ForeignKey("webhook_deliveries.id", ondelete="CASCADE"), index=True
    )
    attempted_at: Mapped[datetime] = _now()
    status_code: Mapped[int | None] = mapped_column(Integer)
    latency_ms: Mapped[int] = mapped_column(Integer)
    # At most 1 KB of the receiver's answer (or of the error).
    response_body: Mapped[str | None] = mapped_column(String(1024))
    error: Mapped[str | None] = mapped_column(String(500))
