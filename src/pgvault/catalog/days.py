"""The per-day totals of backups (``backup_days``): kept in step with ``backups`` inside the
transaction of every write to it, and read by history and totals instead of every row.

A write recomputes the days it touched from ``backups`` itself (never adds or subtracts), so
the totals are exact after any sequence of writes; on PostgreSQL the recompute runs under a
transaction-level advisory lock, so two instances writing rows of the same day at once
cannot each miss the other's row. :func:`refresh_all` rebuilds every day (the migration that
created the table does so).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from pgvault.catalog.tables import backup_days, backups

STATUSES = ("completed", "failed", "interrupted", "running", "deleted")
DAYS_LOCK_KEY = 0x7067_7664  # "pgvd": advisory lock key while recomputing days


def day_of(dialect: str, column: Any) -> Any:
    """The UTC day of a ``started_at`` column as SQL: ``date(x)`` on SQLite (text
    ``YYYY-MM-DD``, the storage form of a SQLite DATE), ``CAST(x AS DATE)`` on PostgreSQL
    (stored without a zone, in UTC)."""
    if dialect == "sqlite":
        return sa.func.date(column)
    return sa.cast(column, sa.Date)


def day_start(day: date) -> datetime:
    """Midnight UTC at the start of ``day``."""
    return datetime.combine(day, time.min, UTC)


PRUNED_BY = ("deleted_by", "retention")
"""The label of the rows retention deleted, counted in ``backup_days.pruned``."""


def _totals(dialect: str, where: Iterable[Any]) -> sa.Select[Any]:
    """``(day, database, completed, failed, interrupted, running, deleted, total_bytes,
    pruned)`` of the ``backups`` rows matching ``where``, grouped by day and database."""
    c = backups.c
    day = day_of(dialect, c.started_at)
    counts = [sa.func.sum(sa.case((c.status == s, 1), else_=0)) for s in STATUSES]
    size = sa.func.coalesce(sa.func.sum(sa.case((c.status == "completed", c.size_bytes))), 0)
    label, value = PRUNED_BY
    by_retention = (c.status == "deleted") & (c.labels[label].as_string() == value)
    pruned = sa.func.sum(sa.case((by_retention, 1), else_=0))
    query = sa.select(day, c.database, *counts, size, pruned)
    return query.where(*where).group_by(day, c.database)


def refresh(conn: Connection, touched: Iterable[tuple[str, datetime]]) -> None:
    """Recompute the ``backup_days`` rows of the days ``touched`` (``(database,
    started_at)`` of each row written, before and after the write) in ``conn``'s
    transaction: per database, every day from the first touched to the last (two
    statements whatever the number of rows)."""
    spans: dict[str, tuple[date, date]] = {}
    for database, started in touched:
        day = started.astimezone(UTC).date()
        low, high = spans.get(database, (day, day))
        spans[database] = (min(low, day), max(high, day))
    if not spans:
        return
    dialect = conn.dialect.name
    if dialect == "postgresql":
        conn.execute(sa.select(sa.func.pg_advisory_xact_lock(DAYS_LOCK_KEY)))
    c, d = backups.c, backup_days.c
    old = sa.or_(
        *(
            (d.database == name) & (d.day >= low) & (d.day <= high)
            for name, (low, high) in spans.items()
        )
    )
    rows = sa.or_(
        *(
            (c.database == name)
            & (c.started_at >= day_start(low))
            & (c.started_at < day_start(high + timedelta(days=1)))
            for name, (low, high) in spans.items()
        )
    )
    conn.execute(backup_days.delete().where(old))
    conn.execute(
        backup_days.insert().from_select(list(backup_days.c.keys()), _totals(dialect, [rows]))
    )


def refresh_all(conn: Connection) -> None:
    """Rebuild every ``backup_days`` row from ``backups`` (one grouped scan)."""
    if conn.dialect.name == "postgresql":
        conn.execute(sa.select(sa.func.pg_advisory_xact_lock(DAYS_LOCK_KEY)))
    conn.execute(backup_days.delete())
    rows = _totals(conn.dialect.name, ())
    conn.execute(backup_days.insert().from_select(list(backup_days.c.keys()), rows))


def count_rows(dialect: str, since: datetime, until: datetime, database: str | None) -> Any:
    """The per-day totals of ``backups`` rows started in ``[since, until)`` (a part of a
    day that ``backup_days`` cannot split), as a grouped query."""
    c = backups.c
    where = [c.started_at >= since, c.started_at < until]
    if database is not None:
        where.append(c.database == database)
    return _totals(dialect, where)
