"""index scheduled_messages.message_id (FK ON DELETE SET NULL lookups)

Revision ID: 0003
Revises: 0001
Create Date: 2026-11-23 02:45:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_scheduled_message_id",
        "scheduled_messages",
        ["message_id"],
        unique=False,
        postgresql_where=sa.text("message_id IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index(
        "ix_scheduled_message_id",
        table_name="scheduled_messages",
        postgresql_where=sa.text("message_id IS NOT NULL"),
    )
