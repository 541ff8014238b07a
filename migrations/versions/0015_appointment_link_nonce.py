"""appointments.link_nonce: the per-appointment secret part of the
self-service link (/a/<token>)

The link's token is an HMAC of the appointment id and this nonce; revoking a
link (POST /api/appointments/<id>/revoke-link) draws a new nonce, so every
link sent before stops working while the appointment keeps its id. Existing
appointments get a random nonce now.

Revision ID: 0015
Revises: 0008
Create Date: 2026-12-02 07:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "appointments",
        sa.Column(
            "link_nonce",
            sa.String(32),
            nullable=False,
            # gen_random_uuid() is built into PostgreSQL 13+ (no extension).
            server_default=sa.text("replace(gen_random_uuid()::text, '-', '')"),
        ),
    )


def downgrade() -> None:
    op.drop_column("appointments", "link_nonce")
