"""contacts.inbox_token: a random per-contact token for the agent inbox

The Rocket.Chat visitor token and the Chatwoot contact-inbox source_id let
whoever holds them act as the patient in the inbox's public (widget) API, so
they are random, not derived from the contact id. Existing contacts keep the
visitor/conversation they have; the token is made on their next post.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01 05:45:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("contacts", sa.Column("inbox_token", sa.String(64), nullable=True))
    op.create_unique_constraint("contacts_inbox_token_key", "contacts", ["inbox_token"])


def downgrade() -> None:
    op.drop_constraint("contacts_inbox_token_key", "contacts", type_="unique")
    op.drop_column("contacts", "inbox_token")
