"""waitlist: waiting patients, freed slots, offers (one claim per slot)

`waitlist_entries` are the patients waiting (POST /api/waitlist, idempotent
by external_id); a cancellation far enough ahead opens a `waitlist_slots`
row; `waitlist_offers` are the offers sent, and the partial unique index
`uq_waitlist_offer_one_claim` on (slot_id) WHERE status = 'claimed' lets
exactly one claim per slot commit.

Revision ID: 0014
Revises: 0012
Create Date: 2026-12-02 07:00:00
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import UUID

revision = "0014"
down_revision = "0012"
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "waitlist_entries",
        sa.Column("id", UUID(as_uuid=True), primary_key=True),
        sa.Column("external_id", sa.String(128), nullable=False, unique=True),
        sa.Column(
            "contact_id",
            UUID(as_uuid=True),
            sa.ForeignKey("contacts.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("professional", sa.Text()),
        sa.Column("location", sa.Text()),
        sa.Column("window_from", TZ, nullable=False),
        sa.Column("window_to", TZ, nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("status", sa.String(16), nullable=False, server_default="waiting"),
        sa.Column("created_at", TZ, nullable=False, server_default=sa.func.now()),
        sa.Column("updated_at", TZ, nullable=False, server_default=sa.func.now()),
    )
    op.create_index("ix_waitlist_entries_contact_id", "waitlist_entries", ["contact_id"])
    op.create_index(
        "ix_waitlist_entries_waiting",
        "waitlist_entries",
        ["priority", "created_at"],
        postgresql_where=sa.text("status = 'waiting'"),
    )
    op.create_table(
        "waitlist_slots",
        sa.Column("id", sa.BigInteger(), primary_key=True),
        sa.Column(
            "appointment_id",
            UUID(as_uuid=True),
            sa.ForeignKey("appointments.id", ondelete="CASCADE"),
            nullable=False,
            unique=True,
        ),
        sa.Column("professional", sa.Text()),
        sa.Column("location", sa.Text()),
        sa.Column("starts_at", TZ, nullable=False),
        sa.Column("duration_minutes", sa.Integer(), nullable=False),
        sa.Column("timezone", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False, server_default="open"),
        sa.Column("next_run_at", TZ, nullable=False),
        sa.Column("created_at", TZ, nullable=False, server_default=sa.func.now()),
        sa.Column("updated_at", TZ, nullable=False, server_default=sa.func.now()),
    )
    op.create_index(
        "ix_waitlist_slots_open",
        "waitlist_slots",
        ["next_run_at"],
        postgresql_where=sa.text("status = 'open'"),
    )
    op.create_table(
        "waitlist_offers",
        sa.Column("id", sa.BigInteger(), primary_key=True),
        sa.Column(
            "slot_id",
            sa.BigInteger(),
            sa.ForeignKey("waitlist_slots.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column(
            "entry_id",
            UUID(as_uuid=True),
            sa.ForeignKey("waitlist_entries.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column(
            "contact_id",
            UUID(as_uuid=True),
            sa.ForeignKey("contacts.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("status", sa.String(16), nullable=False, server_default="offered"),
        sa.Column("channel", sa.String(16), nullable=False),
        sa.Column("expires_at", TZ, nullable=False),
        sa.Column("answered_at", TZ),
        sa.Column("created_at", TZ, nullable=False, server_default=sa.func.now()),
        sa.UniqueConstraint("slot_id", "entry_id", name="uq_waitlist_offer_slot_entry"),
    )
    op.create_index(
        "uq_waitlist_offer_one_claim",
        "waitlist_offers",
        ["slot_id"],
        unique=True,
        postgresql_where=sa.text("status = 'claimed'"),
    )
    op.create_index("ix_waitlist_offers_contact", "waitlist_offers", ["contact_id", "status"])


def downgrade() -> None:
    op.drop_table("waitlist_offers")
    op.drop_table("waitlist_slots")
    op.drop_table("waitlist_entries")
