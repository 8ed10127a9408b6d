"""backups at scale: an index for every listing, page and seek; per-day totals

Replaces ``ix_backups_database_started`` (database, started_at), ``ix_backups_status``
(status) and ``ix_backups_started_id`` (started_at, id; revision 0009) by indexes that each
end with ``(started_at, id)``, the order of every listing, and adds ``backup_days``
(backups per UTC day and database, by status, with the bytes of the completed ones), filled
here from the rows already there.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

INDEXES: dict[str, tuple[str, ...]] = {
    "ix_backups_started": ("started_at", "id", "status", "database", "size_bytes"),
    "ix_backups_database_started": ("database", "started_at", "id", "status"),
    "ix_backups_database_status": ("database", "status", "started_at", "id"),
    "ix_backups_status_started": ("status", "started_at", "id"),
    "ix_backups_environment_started": ("environment", "started_at", "id", "status"),
    "ix_backups_trigger_started": ("trigger", "started_at", "id", "status"),
}
"""This revision's indexes (a copy: a migration must not change when tables.py does)."""

STATUSES = ("completed", "failed", "interrupted", "running", "deleted")


def upgrade() -> None:
    op.drop_index("ix_backups_database_started", table_name="backups")
    op.drop_index("ix_backups_status", table_name="backups")
    op.drop_index("ix_backups_started_id", table_name="backups")
    for name, columns in INDEXES.items():
        op.create_index(name, "backups", list(columns))
    op.create_table(
        "backup_days",
        sa.Column("day", sa.Date, primary_key=True),
        sa.Column("database", sa.String(255), primary_key=True),
        *(sa.Column(status, sa.Integer, nullable=False) for status in STATUSES),
        sa.Column("total_bytes", sa.BigInteger, nullable=False),
    )
    sqlite = op.get_bind().dialect.name == "sqlite"
    day = "date(started_at)" if sqlite else "CAST(started_at AS DATE)"
    counts = ", ".join(f"SUM(CASE WHEN status = '{s}' THEN 1 ELSE 0 END)" for s in STATUSES)
    status_columns = ", ".join(STATUSES)
    op.execute(
        f'INSERT INTO backup_days (day, "database", {status_columns}, total_bytes) '  # noqa: S608 - constants
        f'SELECT {day}, "database", {counts}, '
        "COALESCE(SUM(CASE WHEN status = 'completed' THEN size_bytes END), 0) "
        f'FROM backups GROUP BY {day}, "database"'
    )


def downgrade() -> None:
    op.drop_table("backup_days")
    for name in INDEXES:
        op.drop_index(name, table_name="backups")
    op.create_index("ix_backups_started_id", "backups", ["started_at", "id"])
    op.create_index("ix_backups_status", "backups", ["status"])
    op.create_index("ix_backups_database_started", "backups", ["database", "started_at"])
