"""console: what the attention lists and the filtered conversation list read
is only the rows they show

- ix_messages_outbound_problems: failed / uncertain outbound messages, newest
  first (the attention page's "problems"); tiny, since most messages settle.
- ix_messages_inbound_urgent: inbound messages triaged urgent or worse, by
  time (the attention page's urgent list).
- ix_messages_inbound_conversation: a conversation's last inbound message in
  one probe, instead of walking back past the outbound ones.
- conversations.last_inbound_intent / last_inbound_urgency (backfilled here)
  and their indexes with last_message_at: the conversation list filtered by
  urgency or intent walks only matching conversations, newest first.

Revision ID: 0017
Revises: 0013
Create Date: 2026-12-02 11:40:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0013"
branch_labels = None
depends_on = None

URGENT = "('emergency', 'very_urgent', 'urgent')"


def upgrade() -> None:
    # The last inbound message's triage, on its conversation (kept by
    # shared/contacts/conversations.py refresh_last_inbound_triage): the
    # conversation list filtered by urgency or intent reads the page it shows
    # through these indexes, however rare the grade and long the history.
    op.add_column("conversations", sa.Column("last_inbound_intent", sa.String(64)))
    op.add_column("conversations", sa.Column("last_inbound_urgency", sa.String(16)))
    op.create_index(
        "ix_messages_outbound_problems", "messages", ["created_at"],
        postgresql_where=sa.text("direction = 'outbound' AND status IN ('failed', 'unknown')"),
    )
    op.create_index(
        "ix_messages_inbound_urgent", "messages", ["created_at"],
        postgresql_where=sa.text(f"direction = 'inbound' AND (triage->>'urgency') IN {URGENT}"),
    )
    op.create_index(
        "ix_messages_inbound_conversation", "messages", ["conversation_id", "created_at"],
        postgresql_where=sa.text("direction = 'inbound'"),
    )
    op.execute("""
        UPDATE conversations cv
           SET (last_inbound_intent, last_inbound_urgency) = (
               SELECT m.triage->>'intent', m.triage->>'urgency' FROM messages m
                WHERE m.conversation_id = cv.id AND m.direction = 'inbound'
                ORDER BY m.created_at DESC LIMIT 1)
    """)
    op.create_index("ix_conversations_urgency_recent", "conversations",
                    ["last_inbound_urgency", sa.text("last_message_at DESC NULLS LAST")])
    op.create_index("ix_conversations_intent_recent", "conversations",
                    ["last_inbound_intent", sa.text("last_message_at DESC NULLS LAST")])


def downgrade() -> None:
    op.drop_index("ix_conversations_intent_recent", "conversations")
    op.drop_index("ix_conversations_urgency_recent", "conversations")
    op.drop_column("conversations", "last_inbound_urgency")
    op.drop_column("conversations", "last_inbound_intent")
    op.drop_index("ix_messages_inbound_conversation", "messages")
    op.drop_index("ix_messages_inbound_urgent", "messages")
    op.drop_index("ix_messages_outbound_problems", "messages")
