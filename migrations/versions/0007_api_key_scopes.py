"""api_keys: scopes, one active key per name

Existing keys were all-powerful; they keep every scope so an upgrade breaks
no integration (the README tells operators to replace them with narrower
keys; `clinicq list-api-keys` shows them). Active keys sharing a name are
renamed `<name>-<id>` (oldest keeps the name) before the unique index.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 05:15:00
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

ALL_SCOPES = "ARRAY['intake', 'send', 'read', 'admin']::varchar[]"


def upgrade() -> None:
    op.add_column(
        "api_keys",
        sa.Column(
            "scopes",
            postgresql.ARRAY(sa.String(length=16)),
            server_default=sa.text("'{}'::varchar[]"),
            nullable=False,
        ),
    )
    op.execute(f"UPDATE api_keys SET scopes = {ALL_SCOPES}")  # noqa: S608 - constant
    op.create_check_constraint("ck_api_keys_scopes", "api_keys", f"scopes <@ {ALL_SCOPES}")
    op.execute(
        """
        UPDATE api_keys k
           SET name = left(k.name, 63 - length(k.id::text)) || '-' || k.id
         WHERE k.revoked_at IS NULL
           AND EXISTS (SELECT 1 FROM api_keys o
                        WHERE o.name = k.name AND o.revoked_at IS NULL AND o.id < k.id)
        """
    )
    op.create_index(
        "uq_api_keys_active_name",
        "api_keys",
        ["name"],
        unique=True,
        postgresql_where=sa.text("revoked_at IS NULL"),
    )


def downgrade() -> None:
    op.drop_index(
        "uq_api_keys_active_name",
        table_name="api_keys",
        postgresql_where=sa.text("revoked_at IS NULL"),
    )
    op.drop_constraint("ck_api_keys_scopes", "api_keys", type_="check")
    op.drop_column("api_keys", "scopes")
