"""messages.subject_contact_id: the patient a team-facing message is about

Team alerts, on-call SMS and patient-request e-mails go to staff addresses
(contact_id NULL) but quote the patient's name and words; erasure finds
them by this column.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 05:40:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("messages", sa.Column("subject_contact_id", sa.Uuid(), nullable=True))
    op.create_foreign_key(
        "fk_messages_subject_contact_id",
        "messages",
        "contacts",
        ["subject_contact_id"],
        ["id"],
        ondelete="SET NULL",
    )
    op.create_index(
        "ix_messages_subject_contact_id",
        "messages",
        ["subject_contact_id"],
        unique=False,
        postgresql_where=sa.text("subject_contact_id IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index(
        "ix_messages_subject_contact_id",
        table_name="messages",
        postgresql_where=sa.text("subject_contact_id IS NOT NULL"),
    )
    op.drop_constraint("fk_messages_subject_contact_id", "messages", type_="foreignkey")
    op.drop_column("messages", "subject_contact_id")
