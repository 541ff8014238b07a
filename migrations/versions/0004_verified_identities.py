"""verified identities: contact_identities.verified_at/verified_via,
messages.sender_verified, identity_proofs

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 05:10:00

Backfill: an identity is marked verified only where the database itself
shows who supplied it. A contact's first identities are written in the same
transaction as the contact (both `created_at` are that transaction's
`now()`), so for a contact created by the booking system (`source`
`appointments` or `api`) or by a provider-attested inbound message (`twilio`,
`meta`) those identities are exactly what that source supplied; they are
marked `verified_via = 'backfill:<source>'`. Everything else (identities a
public form or an e-mail added, or added later by anyone — nothing records
who) stays unverified: it keeps working as a delivery address while the
contact has no verified one of its kind, and the next provider message or
booking-system call that names it verifies it.
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "contact_identities", sa.Column("verified_at", sa.DateTime(timezone=True), nullable=True)
    )
    op.add_column("contact_identities", sa.Column("verified_via", sa.String(32), nullable=True))
    op.add_column("messages", sa.Column("sender_verified", sa.Boolean(), nullable=True))
    op.create_table(
        "identity_proofs",
        sa.Column("id", sa.BigInteger(), primary_key=True),
        sa.Column(
            "identity_id",
            sa.BigInteger(),
            sa.ForeignKey("contact_identities.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("requested_by", sa.String(64), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.UniqueConstraint("token_hash", name="identity_proofs_token_hash_key"),
    )
    op.create_index("ix_identity_proofs_identity_id", "identity_proofs", ["identity_id"])
    op.execute(
        """
        UPDATE contact_identities AS i
           SET verified_at = i.created_at,
               verified_via = 'backfill:' || c.source
          FROM contacts AS c
         WHERE c.id = i.contact_id
           AND c.source IN ('appointments', 'api', 'twilio', 'meta')
           AND i.created_at = c.created_at
        """
    )


def downgrade() -> None:
    op.drop_index("ix_identity_proofs_identity_id", table_name="identity_proofs")
    op.drop_table("identity_proofs")
    op.drop_column("messages", "sender_verified")
    op.drop_column("contact_identities", "verified_via")
    op.drop_column("contact_identities", "verified_at")
