"""trust: the restore journal (swap steps, for crash repair) and the globals' sha256

Revision ID: 0004
Revises: 0008
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from pgvault.catalog.tables import UTCDateTime

revision = "0004"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "restore_journal",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("step", sa.String(32), nullable=False),
        sa.Column("server", sa.String(255), nullable=False),
        sa.Column("conn_params", sa.JSON, nullable=False),
        sa.Column("dbname", sa.String(255)),
        sa.Column("scratch", sa.String(255)),
        sa.Column("previous", sa.String(255)),
        sa.Column("load_role", sa.String(64)),
        sa.Column("load_database", sa.String(255)),
        sa.Column("proven", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("runner", sa.String(255)),
        sa.Column("started_at", UTCDateTime, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
        sa.Column("finished_at", UTCDateTime),
        sa.Column("outcome", sa.Text),
        sa.Index("ix_restore_journal_finished", "finished_at"),
    )
    with op.batch_alter_table("backups") as batch:
        batch.add_column(sa.Column("globals_sha256", sa.String(64)))


def downgrade() -> None:
    with op.batch_alter_table("backups") as batch:
        batch.drop_column("globals_sha256")
    op.drop_table("restore_journal")
