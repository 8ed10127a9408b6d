"""The backups list's catalog queries on a PostgreSQL catalog (the label filter reads the
JSON column with ``->>``), as on SQLite."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from pgvault.catalog import Catalog
from pgvault.catalog.records import BackupRecord
from support.pgcluster import PgCluster
from support.vault import Janitor

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def test_label_filter_order_and_count_on_postgresql(pg18: PgCluster, janitor: Janitor) -> None:
    name = janitor.new(pg18, "catalog")
    pg18.create_database(name)
    catalog = Catalog.open(pg18.url(name, with_password=True))
    try:
        for n in range(6):
            catalog.add_backup(
                BackupRecord(
                    id=f"b{n}",
                    database="app",
                    dbname="app",
                    server="h:5432",
                    status="completed",
                    labels={"team": "pay" if n % 2 else "ops", "n": str(n)},
                    storage="local",
                    storage_key=f"k{n}",
                    size_bytes=10,
                    started_at=T0 + timedelta(hours=n),
                )
            )
        paid = catalog.search_backups(label=("team", "pay"), oldest_first=True, limit=10)
        assert [r.id for r in paid] == ["b1", "b3", "b5"]
        assert catalog.count_backups(label=("team", "pay")) == 3
        assert catalog.count_backups(label=("n", "4"), database="app") == 1
        assert catalog.storage_usage() == {"local": (6, 60)}
    finally:
        catalog.engine.dispose()
