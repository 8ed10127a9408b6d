"""Aggregates over the catalog for reports, monitoring and retention, each one SQL query
(or a few) read off the indexes of ``backups``, never every row into Python: totals per
database, counts by status, the names of every database that has backups, each database's
newest rows (last run, newest completed, the comparable one before it), backups per day,
deletions by retention, the slim rows retention decides on, and what each storage target
holds."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from pgvault.catalog import days, newest
from pgvault.catalog.days import STATUSES
from pgvault.catalog.engine import CatalogBase, select_rows, transaction, utc
from pgvault.catalog.newest import NewestRows
from pgvault.catalog.tables import backup_copies, backup_days, backups, restores


@dataclass(slots=True)
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
    pruned: int = 0


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
        return {str(r["name"]) for r in select_rows(self, newest.names_query())}

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

    def pruned_counts(self) -> list[tuple[str, int]]:
        """``(database, count)`` of the rows retention deleted (labelled
        ``deleted_by=retention``), by database name, from the per-day totals."""
        d = backup_days.c
        query = (
            sa.select(d.database, sa.func.sum(d.pruned).label("n"))
            .group_by(d.database)
            .having(sa.func.sum(d.pruned) > 0)
            .order_by(d.database)
        )
        return [(str(r["database"]), int(r["n"])) for r in select_rows(self, query)]

    def newest_rows(self, same: Sequence[str] = ()) -> dict[str, NewestRows]:
        """Every catalogued database's last run, newest completed backup and the newest
        completed one before it whose fields ``same`` are equal (see
        :func:`pgvault.catalog.newest.newest_rows`: four queries whatever the number of
        databases or rows).

        Args:
            same: field names of a backup, e.g. ``("format", "tables")``.

        Returns:
            ``{database: NewestRows}``.
        """
        with transaction(self) as conn:
            return newest.newest_rows(conn, same)

    def history(
        self, *, days: int = 30, database: str | None = None, now: datetime | None = None
    ) -> list[DayCounts]:
        """Backups grouped by UTC day and database, newest day first, over the last ``days``
        before ``now`` (default: now, UTC): :meth:`day_counts`, a query over days, not over
        every backup. ``pgvault history`` and ``GET /history`` answer with it.

        Raises:
            CatalogError: the catalog cannot be read.
        """
        return self.day_counts((now or datetime.now(UTC)) - timedelta(days=days), database)

    def day_counts(self, since: datetime, database: str | None = None) -> list[DayCounts]:
        """Backups started at or after ``since`` (aware), grouped by UTC day and database,
        newest day first (then database, descending). Whole days come from the per-day
        totals; the part of ``since``'s own day after it from ``backups`` (an index range).
        """
        start = utc(since) or since
        whole = start.date() if start == days.day_start(start.date()) else None
        first = whole or start.date() + timedelta(days=1)
        d = backup_days.c
        # the day as text (ISO) on SQLite: date.fromisoformat beats the DATE type's regex
        day = sa.type_coerce(d.day, sa.String) if self.dialect == "sqlite" else d.day
        query = sa.select(day, *(c for c in backup_days.c if c.name != "day")).where(d.day >= first)
        if database is not None:
            query = query.where(d.database == database)
        query = query.order_by(d.day.desc(), d.database.desc())
        with transaction(self) as conn:
            found = list(conn.execute(query).all())
            if whole is None:  # the oldest day, so last
                part = days.count_rows(self.dialect, start, days.day_start(first), database)
                found += conn.execute(part.order_by(backups.c.database.desc())).all()
        return [
            DayCounts(
                day if isinstance(day, date) else date.fromisoformat(str(day)),
                str(name),
                *(int(n or 0) for n in numbers),
            )
            for day, name, *numbers in found
        ]

    def storage_usage(self) -> dict[str, tuple[int, int]]:
        """Per storage target (name or URL, as the rows record it): ``(count, bytes)`` of
        the completed backups and completed copies it holds."""
        found: dict[str, tuple[int, int]] = {}
        for table in (backups, backup_copies):
            c = table.c
            query = (
                sa.select(
                    c.storage,
                    sa.func.count().label("n"),
                    sa.func.coalesce(sa.func.sum(c.size_bytes), 0).label("size"),
                )
                .where(c.status == "completed")
                .group_by(c.storage)
            )
            for row in select_rows(self, query):
                count, size = found.get(str(row["storage"]), (0, 0))
                found[str(row["storage"])] = (count + int(row["n"]), size + int(row["size"]))
        return found
