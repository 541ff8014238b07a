"""console: staff accounts, server-side sessions, cost provenance, report indexes

- console_users: staff of the console (argon2 password hash, role, lockout
  counters, session_epoch bumped by "log out everywhere").
- console_sessions: server-side sessions; only the SHA-256 of the cookie's
  random id is stored.
- messages.cost_estimated: whether `cost` is our estimate (true) or the
  provider's reported price (false); NULL for rows written before this.
- Indexes the console's screens and reports read by (each query's EXPLAIN is
  printed by bench/console.py): messages by created_at (reports, windowed),
  messages by the appointment their metadata names (board answer states),
  appointments by starts_at (board), conversations by last_message_at
  (conversation list), audit_events by created_at (audit page), and a
  trigram index on contacts.name (search by part of a name) when pg_trgm exists.

Revision ID: 0016
Revises: 0014
Create Date: 2026-12-02 07:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "console_users",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("email", sa.String(320), nullable=False, unique=True),
        sa.Column("password_hash", sa.String(255), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("failed_logins", sa.Integer, nullable=False, server_default="0"),
        sa.Column("locked_until", sa.DateTime(timezone=True)),
        sa.Column("session_epoch", sa.Integer, nullable=False, server_default="0"),
        sa.Column("disabled_at", sa.DateTime(timezone=True)),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False,
                  server_default=sa.func.now()),
        sa.CheckConstraint("role IN ('admin', 'frontdesk', 'clinical')",
                           name="ck_console_users_role"),
    )
    op.create_table(
        "console_sessions",
        sa.Column("id_hash", sa.String(64), primary_key=True),
        sa.Column("user_id", sa.Integer,
                  sa.ForeignKey("console_users.id", ondelete="CASCADE"), nullable=False),
        sa.Column("epoch", sa.Integer, nullable=False),
        sa.Column("csrf_token", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False,
                  server_default=sa.func.now()),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False,
                  server_default=sa.func.now()),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_console_sessions_user_id", "console_sessions", ["user_id"])
    op.add_column("messages", sa.Column("cost_estimated", sa.Boolean, nullable=True))
    op.create_index("ix_messages_created_at", "messages", ["created_at"])
    op.create_index(
        "ix_messages_appointment",
        "messages",
        [sa.text("(metadata->>'appointment_id')")],
        postgresql_where=sa.text("metadata ? 'appointment_id'"),
    )
    op.create_index("ix_appointments_starts_at", "appointments", ["starts_at"])
    op.create_index("ix_conversations_last_message", "conversations",
                    [sa.text("last_message_at DESC NULLS LAST")])
    op.create_index("ix_audit_events_created", "audit_events", ["created_at"])
    # The console's search by part of a name: a trigram index, where the
    # server has the pg_trgm extension (contrib; the postgres image has it).
    # Without it the search still works, by a scan of contacts.
    bind = op.get_bind()
    has_trgm = bind.execute(
        sa.text("SELECT 1 FROM pg_available_extensions WHERE name = 'pg_trgm'")
    ).scalar()
    if has_trgm:
        op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
        op.execute("CREATE INDEX ix_contacts_name_trgm ON contacts USING gin (name gin_trgm_ops)")


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS ix_contacts_name_trgm")
    op.drop_index("ix_audit_events_created", "audit_events")
    op.drop_index("ix_conversations_last_message", "conversations")
    op.drop_index("ix_appointments_starts_at", "appointments")
    op.drop_index("ix_messages_appointment", "messages")
    op.drop_index("ix_messages_created_at", "messages")
    op.drop_column("messages", "cost_estimated")
    op.drop_index("ix_console_sessions_user_id", "console_sessions")
    op.drop_table("console_sessions")
    op.drop_table("console_users")
