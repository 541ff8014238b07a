"""dead_letters table; messages.reacted_at (react re-drive marker)

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 05:30:00
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "dead_letters",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("task_name", sa.String(length=128), nullable=False),
        sa.Column("task_id", sa.String(length=64), nullable=True),
        sa.Column("queue", sa.String(length=32), nullable=True),
        sa.Column("message_id", postgresql.UUID(as_uuid=True), nullable=True),
        sa.Column("args", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("kwargs", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("error_class", sa.String(length=128), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("replayed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("replay_count", sa.Integer(), server_default="0", nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_dead_letters_message_id", "dead_letters", ["message_id"])
    op.create_index(
        "ix_dead_letters_open", "dead_letters", ["created_at"],
        postgresql_where=sa.text("replayed_at IS NULL"),
    )
    op.add_column("messages", sa.Column("reacted_at", sa.DateTime(timezone=True), nullable=True))
    # Every inbound message filed before this revision was reacted to by the
    # code of its time: mark it, or the re-drive would acknowledge it again.
    op.execute("UPDATE messages SET reacted_at = created_at WHERE direction = 'inbound'")
    op.create_index(
        "ix_messages_unreacted", "messages", ["created_at"],
        postgresql_where=sa.text("direction = 'inbound' AND reacted_at IS NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_messages_unreacted", table_name="messages")
    op.drop_column("messages", "reacted_at")
    op.drop_index("ix_dead_letters_open", table_name="dead_letters")
    op.drop_index("ix_dead_letters_message_id", table_name="dead_letters")
    op.drop_table("dead_letters")
