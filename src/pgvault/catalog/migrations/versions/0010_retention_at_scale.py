"""retention at scale: pinned backups by database, and retention's deletions per day

Retention reads the young completed backups of a database only as far back as its rules
need (``pgvault.catalog.retention.history``), and every pinned one besides: the index
``ix_backups_database_pinned`` makes those a seek instead of a scan of the database's rows.
``backup_days.pruned`` counts, per UTC day and database, the rows retention deleted
(``deleted``, labelled ``deleted_by=retention``), so ``/metrics`` sums days instead of
reading the labels of every deleted row; it is filled here from the rows already there.

Revision ID: 0010
Revises: 0005
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0005"
branch_labels = None
depends_on = None

COLUMNS = ("database", "pinned", "status", "started_at", "id")
"""This revision's index (a copy: a migration must not change when tables.py does)."""


def upgrade() -> None:
    op.create_index("ix_backups_database_pinned", "backups", list(COLUMNS))
    with op.batch_alter_table("backup_days") as batch:
        batch.add_column(sa.Column("pruned", sa.Integer, nullable=False, server_default="0"))
    sqlite = op.get_bind().dialect.name == "sqlite"
    day = "date(b.started_at)" if sqlite else "CAST(b.started_at AS DATE)"
    label = "json_extract(b.labels, '$.deleted_by')" if sqlite else "b.labels ->> 'deleted_by'"
    op.execute(
        "UPDATE backup_days SET pruned = (SELECT count(*) FROM backups b "  # noqa: S608 - constants
        f'WHERE b."database" = backup_days."database" AND {day} = backup_days.day '
        f"AND b.status = 'deleted' AND {label} = 'retention')"
    )


def downgrade() -> None:
    with op.batch_alter_table("backup_days") as batch:
        batch.drop_column("pruned")
    op.drop_index("ix_backups_database_pinned", table_name="backups")
