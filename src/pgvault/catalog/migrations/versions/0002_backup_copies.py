"""backup_copies: one row per extra storage target a backup was copied to (3-2-1)

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from pgvault.catalog.tables import UTCDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "backup_copies",
        sa.Column("backup_id", sa.String(64), primary_key=True),
        sa.Column("storage", sa.Text, primary_key=True),
        sa.Column("storage_key", sa.Text, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("size_bytes", sa.BigInteger),
        sa.Column("sha256", sa.String(64)),
        sa.Column("copied_at", UTCDateTime),
        sa.Column("error", sa.Text),
    )


def downgrade() -> None:
    op.drop_table("backup_copies")
