"""backups and restores

Revision ID: 0001
Revises:
Create Date: 2026-11-21
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from pgvault.catalog.tables import UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "backups",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("database", sa.String(255), nullable=False),
        sa.Column("dbname", sa.String(255), nullable=False),
        sa.Column("server", sa.String(255), nullable=False),
        sa.Column("environment", sa.String(64)),
        sa.Column("trigger", sa.String(32), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("format", sa.String(16), nullable=False),
        sa.Column("compression", sa.String(16), nullable=False),
        sa.Column("compression_level", sa.Integer),
        sa.Column("compressed_by", sa.String(16)),
        sa.Column("encrypted", sa.Boolean, nullable=False),
        sa.Column("tables", sa.JSON, nullable=False),
        sa.Column("exclude_tables", sa.JSON, nullable=False),
        sa.Column("schemas", sa.JSON, nullable=False),
        sa.Column("labels", sa.JSON, nullable=False),
        sa.Column("storage", sa.Text, nullable=False),
        sa.Column("storage_key", sa.Text, nullable=False),
        sa.Column("globals_key", sa.Text),
        sa.Column("size_bytes", sa.BigInteger),
        sa.Column("sha256", sa.String(64)),
        sa.Column("server_version", sa.String(32)),
        sa.Column("pg_dump_version", sa.String(32)),
        sa.Column("started_at", UTCDateTime, nullable=False),
        sa.Column("finished_at", UTCDateTime),
        sa.Column("duration_seconds", sa.Float),
        sa.Column("error", sa.Text),
        sa.Column("row_counts", sa.JSON),
        sa.Column("object_counts", sa.JSON),
        sa.Column("created_by", sa.String(255)),
        sa.Column("runner", sa.String(255)),
        sa.Column("verified_at", UTCDateTime),
        sa.Column("verify_status", sa.String(16)),
        sa.Column("verify_detail", sa.Text),
        sa.Column("pinned", sa.Boolean, nullable=False),
        sa.Column("manifest_version", sa.Integer, nullable=False),
    )
    op.create_index("ix_backups_database_started", "backups", ["database", "started_at"])
    op.create_index("ix_backups_status", "backups", ["status"])
    op.create_table(
        "restores",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("backup_id", sa.String(64)),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("target", sa.Text, nullable=False),
        sa.Column("dbname", sa.String(255), nullable=False),
        sa.Column("mode", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("safety_backup_id", sa.String(64)),
        sa.Column("previous_database", sa.String(255)),
        sa.Column("started_at", UTCDateTime, nullable=False),
        sa.Column("finished_at", UTCDateTime),
        sa.Column("duration_seconds", sa.Float),
        sa.Column("error", sa.Text),
        sa.Column("warnings", sa.JSON, nullable=False),
        sa.Column("created_by", sa.String(255)),
    )
    op.create_index("ix_restores_started", "restores", ["started_at"])


def downgrade() -> None:
    op.drop_table("restores")
    op.drop_table("backups")
