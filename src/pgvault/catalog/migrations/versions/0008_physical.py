"""physical backups and the WAL archive: wal_segments, physical_backups, restore_points,
wal_streams

Revision ID: 0008
Revises: 0009
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from pgvault.catalog.tables import UTCDateTime

revision = "0008"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "wal_segments",
        sa.Column("system_identifier", sa.String(20), primary_key=True),
        sa.Column("name", sa.String(40), primary_key=True),
        sa.Column("timeline", sa.Integer, nullable=False),
        sa.Column("segment_number", sa.BigInteger),
        sa.Column("database", sa.String(255), nullable=False),
        sa.Column("storage", sa.Text, nullable=False),
        sa.Column("storage_key", sa.Text, nullable=False),
        sa.Column("size_bytes", sa.BigInteger, nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("wal_size_bytes", sa.BigInteger, nullable=False),
        sa.Column("wal_sha256", sa.String(64), nullable=False),
        sa.Column("compression", sa.String(16), nullable=False),
        sa.Column("encrypted", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("archived_at", UTCDateTime, nullable=False),
    )
    op.create_index(
        "ix_wal_segments_order",
        "wal_segments",
        ["system_identifier", "timeline", "segment_number"],
    )
    op.create_index("ix_wal_segments_database", "wal_segments", ["database", "archived_at"])
    op.create_table(
        "physical_backups",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("database", sa.String(255), nullable=False),
        sa.Column("server", sa.String(255), nullable=False),
        sa.Column("environment", sa.String(64)),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("parent_id", sa.String(64)),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("trigger", sa.String(32), nullable=False),
        sa.Column("storage", sa.Text, nullable=False),
        sa.Column("storage_key", sa.Text, nullable=False),
        sa.Column("manifest_key", sa.Text),
        sa.Column("size_bytes", sa.BigInteger),
        sa.Column("sha256", sa.String(64)),
        sa.Column("manifest_sha256", sa.String(64)),
        sa.Column("compression", sa.String(16), nullable=False),
        sa.Column("encrypted", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("server_version", sa.String(32)),
        sa.Column("tool_version", sa.String(32)),
        sa.Column("system_identifier", sa.String(20)),
        sa.Column("timeline", sa.Integer),
        sa.Column("segment_size", sa.BigInteger),
        sa.Column("start_lsn", sa.BigInteger),
        sa.Column("stop_lsn", sa.BigInteger),
        sa.Column("start_wal", sa.String(40)),
        sa.Column("stop_wal", sa.String(40)),
        sa.Column("started_at", UTCDateTime, nullable=False),
        sa.Column("finished_at", UTCDateTime),
        sa.Column("duration_seconds", sa.Float),
        sa.Column("error", sa.Text),
        sa.Column("labels", sa.JSON, nullable=False),
        sa.Column("created_by", sa.String(255)),
        sa.Column("runner", sa.String(255)),
        sa.Column("verified_at", UTCDateTime),
        sa.Column("verify_status", sa.String(16)),
        sa.Column("verify_detail", sa.Text),
        sa.Column("pinned", sa.Boolean, nullable=False, server_default=sa.false()),
    )
    op.create_index(
        "ix_physical_backups_database_started", "physical_backups", ["database", "started_at"]
    )
    op.create_table(
        "restore_points",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("database", sa.String(255), nullable=False),
        sa.Column("system_identifier", sa.String(20), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("lsn", sa.BigInteger, nullable=False),
        sa.Column("timeline", sa.Integer, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("created_by", sa.String(255)),
    )
    op.create_index("ix_restore_points_database", "restore_points", ["database", "name"])
    op.create_table(
        "wal_streams",
        sa.Column("database", sa.String(255), primary_key=True),
        sa.Column("system_identifier", sa.String(20)),
        sa.Column("slot", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("runner", sa.String(255)),
        sa.Column("started_at", UTCDateTime),
        sa.Column("heartbeat_at", UTCDateTime),
        sa.Column("restarts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("last_error", sa.Text),
        sa.Column("server_lsn", sa.BigInteger),
        sa.Column("slot_retained_bytes", sa.BigInteger),
    )


def downgrade() -> None:
    op.drop_table("wal_streams")
    op.drop_index("ix_restore_points_database", "restore_points")
    op.drop_table("restore_points")
    op.drop_index("ix_physical_backups_database_started", "physical_backups")
    op.drop_table("physical_backups")
    op.drop_index("ix_wal_segments_database", "wal_segments")
    op.drop_index("ix_wal_segments_order", "wal_segments")
    op.drop_table("wal_segments")
