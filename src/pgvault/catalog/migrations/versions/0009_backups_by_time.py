"""backups: an index on (started_at, id), the order of every newest-first listing

Without it a page of the backups list sorts the whole table (``ORDER BY started_at DESC, id
DESC LIMIT 50 OFFSET n``); with it SQLite and PostgreSQL walk the index. Measured on 10,000
backups in ``bench/bench_web.py``.

Revision ID: 0009
Revises: 0007
Create Date: 2026-11-28
"""

from __future__ import annotations

from alembic import op

revision = "0009"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_backups_started_id", "backups", ["started_at", "id"])


def downgrade() -> None:
    op.drop_index("ix_backups_started_id", table_name="backups")
