"""scheduled_messages failover columns: the chain still to try, its state,
the fallback message and why it went out or did not; a partial index on
messages carrying a failover chain (on-call alerts)

Revision ID: 0012
Revises: 0015
Create Date: 2026-12-02 07:05:00
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0012"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("scheduled_messages", sa.Column("fallback_channels", sa.String(128)))
    op.add_column("scheduled_messages", sa.Column("fallback_state", sa.String(16)))
    op.add_column(
        "scheduled_messages",
        sa.Column(
            "fallback_message_id",
            postgresql.UUID(as_uuid=True),
            sa.ForeignKey(
                "messages.id",
                ondelete="SET NULL",
                name="scheduled_messages_fallback_message_id_fkey",
            ),
        ),
    )
    op.add_column(
        "scheduled_messages", sa.Column("fallback_due_at", sa.DateTime(timezone=True))
    )
    op.add_column("scheduled_messages", sa.Column("fallback_reason", sa.Text()))
    op.create_index(
        "ix_scheduled_fallback_watching",
        "scheduled_messages",
        ["id"],
        postgresql_where=sa.text("fallback_state = 'watching'"),
    )
    op.create_index(
        "ix_scheduled_fallback_message_id",
        "scheduled_messages",
        ["fallback_message_id"],
        postgresql_where=sa.text("fallback_message_id IS NOT NULL"),
    )
    op.create_index(
        "ix_messages_failover_chain",
        "messages",
        ["created_at"],
        postgresql_where=sa.text("metadata ? 'failover_channels'"),
    )


def downgrade() -> None:
    op.drop_index("ix_messages_failover_chain", table_name="messages")
    op.drop_index("ix_scheduled_fallback_message_id", table_name="scheduled_messages")
    op.drop_index("ix_scheduled_fallback_watching", table_name="scheduled_messages")
    op.drop_column("scheduled_messages", "fallback_reason")
    op.drop_column("scheduled_messages", "fallback_due_at")
    op.drop_column("scheduled_messages", "fallback_message_id")
    op.drop_column("scheduled_messages", "fallback_state")
    op.drop_column("scheduled_messages", "fallback_channels")
