"""file snapshots: file_snapshots (one row per snapshot of a file set) and
file_snapshot_copies (one row per extra storage target a snapshot was copied to)

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from pgvault.catalog.tables import UTCDateTime

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "file_snapshots",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("file_set", sa.String(255), nullable=False),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("storage", sa.Text, nullable=False),
        sa.Column("manifest_key", sa.Text, nullable=False),
        sa.Column("index_key", sa.Text, nullable=False),
        sa.Column("manifest_sha256", sa.String(64)),
        sa.Column("manifest_size", sa.BigInteger),
        sa.Column("index_sha256", sa.String(64)),
        sa.Column("index_size", sa.BigInteger),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("trigger", sa.String(32), nullable=False),
        sa.Column("backup_id", sa.String(64)),
        sa.Column("environment", sa.String(64)),
        sa.Column("encrypted", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("consistency", sa.String(16), nullable=False),
        sa.Column("as_of", UTCDateTime),
        sa.Column("objects", sa.BigInteger),
        sa.Column("bytes", sa.BigInteger),
        sa.Column("copied_objects", sa.BigInteger),
        sa.Column("copied_bytes", sa.BigInteger),
        sa.Column("stored_blobs", sa.BigInteger),
        sa.Column("stored_bytes", sa.BigInteger),
        sa.Column("detail", sa.Text),
        sa.Column("labels", sa.JSON, nullable=False),
        sa.Column("pinned", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("started_at", UTCDateTime, nullable=False),
        sa.Column("finished_at", UTCDateTime),
        sa.Column("duration_seconds", sa.Float),
        sa.Column("error", sa.Text),
        sa.Column("created_by", sa.String(255)),
        sa.Column("runner", sa.String(255)),
        sa.Column("verified_at", UTCDateTime),
        sa.Column("verify_status", sa.String(16)),
        sa.Column("verify_detail", sa.Text),
    )
    op.create_index("ix_file_snapshots_set_started", "file_snapshots", ["file_set", "started_at"])
    op.create_index("ix_file_snapshots_backup", "file_snapshots", ["backup_id"])
    op.create_index("ix_file_snapshots_status", "file_snapshots", ["status"])
    op.create_table(
        "file_snapshot_copies",
        sa.Column("snapshot_id", sa.String(64), primary_key=True),
        sa.Column("storage", sa.Text, primary_key=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("copied_blobs", sa.BigInteger),
        sa.Column("copied_bytes", sa.BigInteger),
        sa.Column("copied_at", UTCDateTime),
        sa.Column("error", sa.Text),
    )


def downgrade() -> None:
    op.drop_table("file_snapshot_copies")
    op.drop_index("ix_file_snapshots_status", "file_snapshots")
    op.drop_index("ix_file_snapshots_backup", "file_snapshots")
    op.drop_index("ix_file_snapshots_set_started", "file_snapshots")
    op.drop_table("file_snapshots")
