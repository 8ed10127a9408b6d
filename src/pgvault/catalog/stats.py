"""Aggregates over the catalog for reports and monitoring: totals per database, counts by
status, the names of every database that has backups, what each storage target holds."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from pgvault.catalog.engine import CatalogBase, select_rows
from pgvault.catalog.tables import backup_copies, backups, restores


class StatsRows(CatalogBase):
    """The aggregate queries of :class:`pgvault.catalog.Catalog`."""

    def stats(self) -> list[dict[str, Any]]:
        """Per database: completed ``count``, ``total_bytes``, ``oldest`` and ``newest`` (UTC)."""
        c = backups.c
        query = (
            sa.select(
                c.database,
                sa.func.count().label("count"),
                sa.func.coalesce(sa.func.sum(c.size_bytes), 0).label("total_bytes"),
                sa.func.min(c.started_at).label("oldest"),
                sa.func.max(c.started_at).label("newest"),
            )
            .where(c.status == "completed")
            .group_by(c.database)
            .order_by(c.database)
        )
        return select_rows(self, query)

    def backup_databases(self) -> set[str]:
        """The database names that have at least one backup row."""
        query = sa.select(backups.c.database).distinct()
        return {str(r["database"]) for r in select_rows(self, query)}

    def backup_counts(self) -> list[tuple[str, str, int]]:
        """``(database, status, count)`` of every backup row."""
        c = backups.c
        query = sa.select(c.database, c.status, sa.func.count().label("n")).group_by(
            c.database, c.status
        )
        return [
            (str(r["database"]), str(r["status"]), int(r["n"])) for r in select_rows(self, query)
        ]

    def restore_counts(self) -> list[tuple[str, int]]:
        """``(status, count)`` of every restore row."""
        c = restores.c
        query = sa.select(c.status, sa.func.count().label("n")).group_by(c.status)
        return [(str(r["status"]), int(r["n"])) for r in select_rows(self, query)]

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
