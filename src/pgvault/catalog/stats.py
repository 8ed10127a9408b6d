"""Aggregates over the catalog for reports, monitoring and retention, each one SQL query
(or a few) read off the indexes of ``backups``, never every row into Python: totals per
database, counts by status, the names of every database that has backups, each database's
newest rows (last run, newest completed, the comparable one before it), backups per day,
deletions by retention, and the slim rows retention decides on."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from pgvault.catalog import days
from pgvault.catalog.backups import older_than
from pgvault.catalog.days import STATUSES
from pgvault.catalog.engine import CatalogBase, select_rows, transaction, utc
from pgvault.catalog.records import BackupRecord
from pgvault.catalog.tables import backup_days, backups, restores

ENDED = ("completed", "failed", "interrupted")
LOOK_BACK = 200
"""Completed rows before a database's newest that :meth:`StatsRows.newest_rows` looks
through for a comparable one."""
RETENTION_COLUMNS = (
    "id",
    "database",
    "dbname",
    "server",
    "environment",
    "trigger",
    "status",
    "storage",
    "storage_key",
    "size_bytes",
    "started_at",
    "labels",
    "pinned",
)
"""The columns of :meth:`StatsRows.retention_rows`: what retention decides on and what a
prune report shows."""


@dataclass(frozen=True)
class NewestRows:
    """One database's newest rows, as health judges it (each None when there is none).

    Attributes:
        last_run: the newest row that ended (``completed``, ``failed`` or ``interrupted``).
        completed: the newest ``completed`` row.
        previous: the newest ``completed`` row before ``completed`` equal to it in the
            columns asked for (the comparable backup of a size check).
    """

    last_run: BackupRecord | None
    completed: BackupRecord | None
    previous: BackupRecord | None

    def rows(self) -> list[BackupRecord]:
        """The distinct rows, newest first."""
        found = {r.id: r for r in (self.last_run, self.completed, self.previous) if r}
        return sorted(found.values(), key=lambda r: (r.started_at, r.id), reverse=True)


@dataclass(frozen=True)
class DayCounts:
    """Backups of one database started on one UTC day, counted by status, and the bytes of
    the completed ones."""

    day: date
    database: str
    completed: int
    failed: int
    interrupted: int
    running: int
    deleted: int
    total_bytes: int


def _newest(table: Any, *where: Any) -> Any:
    """The id of the newest row of ``table`` matching ``where`` (a correlated scalar
    subquery: one index seek per outer row)."""
    return (
        sa.select(table.c.id)
        .where(*where)
        .order_by(table.c.started_at.desc(), table.c.id.desc())
        .limit(1)
        .scalar_subquery()
    )


def _names() -> Any:
    """The distinct database names of ``backups`` as a recursive CTE ``names(name)``: one
    index seek per name (a loose index scan, as in the PostgreSQL wiki's recipe), not a scan
    of every row."""
    c = backups.c
    first = sa.select(sa.func.min(c.database).label("name")).cte("names", recursive=True)
    b = backups.alias("b")
    after = sa.select(sa.func.min(b.c.database)).where(b.c.database > first.c.name)
    step = sa.select(after.scalar_subquery()).where(first.c.name.is_not(None))
    return first.union_all(step)


def _previous_query(ids: list[str]) -> Any:
    """``(id, id of the completed row just before it in its database)`` of each of ``ids``."""
    n, p = backups.alias("n"), backups.alias("p")
    before = older_than(p, n.c.started_at, n.c.id)
    found = _newest(p, p.c.database == n.c.database, p.c.status == "completed", before)
    return sa.select(n.c.id, found).where(n.c.id.in_(ids))


def _alike(a: BackupRecord, b: BackupRecord, same: Sequence[str]) -> bool:
    return all(getattr(a, name) == getattr(b, name) for name in same)


def _look_back(conn: Connection, newest: BackupRecord, same: Sequence[str]) -> BackupRecord | None:
    """The newest of the :data:`LOOK_BACK` completed rows before ``newest`` (same database)
    equal to it in ``same``, or None."""
    c = backups.c
    query = (
        sa.select(backups)
        .where(
            c.database == newest.database,
            c.status == "completed",
            older_than(backups, newest.started_at, newest.id),
        )
        .order_by(c.started_at.desc(), c.id.desc())
        .limit(LOOK_BACK)
    )
    for row in conn.execute(query):
        record = BackupRecord.model_validate(dict(row._mapping))
        if _alike(record, newest, same):
            return record
    return None


class StatsRows(CatalogBase):
    """The aggregate queries of :class:`pgvault.catalog.Catalog`."""

    def stats(self) -> list[dict[str, Any]]:
        """Per database with completed backups: their ``count``, ``total_bytes``, ``oldest``
        and ``newest`` (``started_at``, UTC). Sums from the per-day totals, the two ends by
        one index seek each."""
        d, b = backup_days.c, backups.alias("b")
        totals = (
            sa.select(
                d.database,
                sa.func.sum(d.completed).label("count"),
                sa.func.sum(d.total_bytes).label("total_bytes"),
            )
            .group_by(d.database)
            .having(sa.func.sum(d.completed) > 0)
            .subquery()
        )
        t = totals.c

        def end(fn: Any) -> Any:
            return (
                sa.select(fn(b.c.started_at))
                .where(b.c.database == t.database, b.c.status == "completed")
                .scalar_subquery()
            )

        query = sa.select(
            t.database,
            t["count"],
            t.total_bytes,
            end(sa.func.min).label("oldest"),
            end(sa.func.max).label("newest"),
        ).order_by(t.database)
        rows = select_rows(self, query)
        for row in rows:
            row["count"], row["total_bytes"] = int(row["count"]), int(row["total_bytes"])
        return rows

    def backup_databases(self) -> set[str]:
        """The database names that have at least one backup row (one index seek each)."""
        names = _names()
        query = sa.select(names.c.name).where(names.c.name.is_not(None))
        return {str(r["name"]) for r in select_rows(self, query)}

    def backup_counts(self) -> list[tuple[str, str, int]]:
        """``(database, status, count)`` of every backup row (counts above zero), from the
        per-day totals."""
        d = backup_days.c
        query = sa.select(d.database, *(sa.func.sum(d[s]).label(s) for s in STATUSES)).group_by(
            d.database
        )
        return [
            (str(r["database"]), s, int(r[s]))
            for r in select_rows(self, query)
            for s in STATUSES
            if r[s]
        ]

    def restore_counts(self) -> list[tuple[str, int]]:
        """``(status, count)`` of every restore row."""
        c = restores.c
        query = sa.select(c.status, sa.func.count().label("n")).group_by(c.status)
        return [(str(r["status"]), int(r["n"])) for r in select_rows(self, query)]

    def deleted_counts(self, label: str, value: str) -> list[tuple[str, int]]:
        """``(database, count)`` of the ``deleted`` rows labelled ``label=value`` (e.g.
        ``deleted_by=retention``), by database name."""
        c = backups.c
        query = (
            sa.select(c.database, sa.func.count().label("n"))
            .where(c.status == "deleted", c.labels[label].as_string() == value)
            .group_by(c.database)
            .order_by(c.database)
        )
        return [(str(r["database"]), int(r["n"])) for r in select_rows(self, query)]

    def newest_rows(self, same: Sequence[str] = ()) -> dict[str, NewestRows]:
        """Every catalogued database's last run, newest completed backup and the newest
        completed one before it whose fields ``same`` are equal, looked for among the
        :data:`LOOK_BACK` completed rows before it. Three queries whatever the number of
        databases or rows (each an index seek per database), and one more per database
        whose previous completed backup differs in ``same`` (a table-subset backup, say).

        Args:
            same: column names of ``backups``, e.g. ``("format", "tables")``.

        Returns:
            ``{database: NewestRows}``.
        """
        names = _names()
        b = backups.alias("b")
        query = (
            sa.select(
                names.c.name,
                _newest(b, b.c.database == names.c.name, b.c.status.in_(ENDED)).label("run"),
                _newest(b, b.c.database == names.c.name, b.c.status == "completed").label("done"),
            )
            .select_from(names)
            .where(names.c.name.is_not(None))
        )
        with transaction(self) as conn:
            heads = [(str(r[0]), r[1], r[2]) for r in conn.execute(query).all()]
            done = [d for _, _, d in heads if d is not None]
            before = dict(conn.execute(_previous_query(done)).all()) if done else {}
            wanted = {i for _, r, d in heads for i in (r, d, before.get(d)) if i is not None}
            rows = conn.execute(sa.select(backups).where(backups.c.id.in_(wanted))).all()
            by_id = {r.id: BackupRecord.model_validate(dict(r._mapping)) for r in rows}
            found = {}
            for name, run, newest in heads:
                completed = by_id.get(newest) if newest else None
                previous = by_id.get(before.get(newest) or "")
                if completed and previous and not _alike(completed, previous, same):
                    previous = _look_back(conn, completed, same)
                last = by_id.get(run) if run else None
                found[name] = NewestRows(last_run=last, completed=completed, previous=previous)
        return found

    def day_counts(self, since: datetime, database: str | None = None) -> list[DayCounts]:
        """Backups started at or after ``since`` (aware), grouped by UTC day and database,
        newest day first (then database, descending). Whole days come from the per-day
        totals; the part of ``since``'s own day after it from ``backups`` (an index range).
        """
        start = utc(since) or since
        whole = start.date() if start == days.day_start(start.date()) else None
        first = whole or start.date() + timedelta(days=1)
        d = backup_days.c
        query = sa.select(backup_days).where(d.day >= first)
        if database is not None:
            query = query.where(d.database == database)
        with transaction(self) as conn:
            found = [tuple(r) for r in conn.execute(query).all()]
            if whole is None:
                part = days.count_rows(self.dialect, start, days.day_start(first), database)
                found += [tuple(r) for r in conn.execute(part).all()]
        counts = [
            DayCounts(
                day=day if isinstance(day, date) else date.fromisoformat(str(day)),
                database=str(name),
                **{s: int(n or 0) for s, n in zip(STATUSES, numbers[:5], strict=True)},
                total_bytes=int(numbers[5] or 0),
            )
            for day, name, *numbers in found
        ]
        counts = [c for c in counts if any(getattr(c, s) for s in STATUSES)]
        return sorted(counts, key=lambda c: (c.day, c.database), reverse=True)

    def retention_rows(self, database: str) -> list[BackupRecord]:
        """The rows of ``database`` not yet ``deleted``, newest first, holding only
        :data:`RETENTION_COLUMNS` (the others keep their defaults): what retention decides
        on, read without the JSON of row counts, at a fraction of :meth:`list_backups`'
        cost. Never save these records: read a row whole (``get_backup``) before acting
        on it.
        """
        c = backups.c
        query = (
            sa.select(*(c[name] for name in RETENTION_COLUMNS))
            .where(c.database == database, c.status != "deleted")
            .order_by(c.started_at.desc(), c.id.desc())
        )
        with transaction(self) as conn:
            rows = conn.execute(query).all()
        return [BackupRecord.model_validate(dict(row._mapping)) for row in rows]
