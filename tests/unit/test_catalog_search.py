"""The backups list's catalog queries on SQLite: filters (label included), both orders, the
count of all pages, and what each storage target holds."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pgvault import backups
from pgvault.catalog import Catalog
from pgvault.catalog.records import BackupCopy, BackupRecord
from pgvault.errors import ConfigError

T0 = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture
def catalog(tmp_path: Path) -> Iterator[Catalog]:
    opened = Catalog.open(f"sqlite:///{tmp_path / 'catalog.sqlite3'}")
    for n in range(12):
        opened.add_backup(
            BackupRecord(
                id=f"b{n:02d}",
                database="app" if n % 2 else "crm",
                dbname="x",
                server="h:5432",
                status="failed" if n == 11 else "completed",
                trigger="scheduled" if n % 3 else "manual",
                labels={"team": "pay"} if n % 4 == 0 else {"team": "ops"},
                storage="local",
                storage_key=f"k{n}",
                size_bytes=100 + n,
                started_at=T0 + timedelta(hours=n),
            )
        )
    yield opened
    opened.engine.dispose()


def test_filters_orders_and_counts(catalog: Catalog) -> None:
    newest = [r.id for r in catalog.search_backups(limit=3)]
    oldest = [r.id for r in catalog.search_backups(limit=3, oldest_first=True)]
    assert newest == ["b11", "b10", "b09"] and oldest == ["b00", "b01", "b02"]
    assert [r.id for r in catalog.search_backups(limit=2, offset=10)] == ["b01", "b00"]
    paid = catalog.search_backups(label=("team", "pay"), limit=50)
    assert [r.id for r in paid] == ["b08", "b04", "b00"]
    assert catalog.count_backups(label=("team", "pay")) == 3
    assert catalog.count_backups(label=("team", "nobody")) == 0
    assert catalog.count_backups() == 12
    assert catalog.count_backups(database="app", status="completed") == 5
    assert catalog.count_backups(trigger="manual", database="crm") == 2  # b00, b06


def test_storage_usage_adds_copies(catalog: Catalog) -> None:
    catalog.save_copy(
        BackupCopy(
            backup_id="b00", storage="offsite", storage_key="k0", status="completed", size_bytes=100
        )
    )
    usage = catalog.storage_usage()
    assert usage["local"] == (11, sum(100 + n for n in range(11)))
    assert usage["offsite"] == (1, 100)


def test_pinning(catalog: Catalog) -> None:
    assert backups.set_pinned(catalog, "b03", True).pinned
    assert catalog.get_backup("b03").pinned
    assert not backups.set_pinned(catalog, "b03", False).pinned
    record = catalog.get_backup("b05")
    record.status = "deleted"
    catalog.save_backup(record)
    with pytest.raises(ConfigError, match="deleted"):
        backups.set_pinned(catalog, "b05", True)
