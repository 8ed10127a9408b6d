"""The catalog on a throwaway SQLite file: rows in, rows out, filters, stats, NotFound."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pgvault.catalog import Catalog
from pgvault.catalog.records import BackupRecord, RestoreRecord
from pgvault.errors import CatalogError, NotFound

T0 = datetime(2026, 11, 21, 5, 0, tzinfo=UTC)


@pytest.fixture
def catalog(tmp_path: Path) -> Iterator[Catalog]:
    opened = Catalog.open(f"sqlite:///{tmp_path / 'sub' / 'catalog.sqlite3'}")
    yield opened
    opened.engine.dispose()


def _record(n: int, database: str = "app", **fields: object) -> BackupRecord:
    values: dict[str, object] = {
        "id": f"2026112{n}-050000-000{n}",
        "database": database,
        "dbname": database,
        "server": "db.example:5432",
        "storage": "/backups",
        "storage_key": f"{database}/{n}.dump",
        "started_at": T0 + timedelta(hours=n),
    }
    values.update(fields)
    return BackupRecord.model_validate(values)


def test_add_get_and_save(catalog: Catalog, tmp_path: Path) -> None:
    record = _record(1, labels={"team": "data"}, environment="production")
    catalog.add_backup(record)

    assert (tmp_path / "sub" / "catalog.sqlite3").is_file()
    assert catalog.get_backup(record.id) == record
    record.status = "completed"
    record.size_bytes = 12_345_678_901  # more than 32 bits
    record.sha256 = "ab" * 32
    record.row_counts = {"public.actor": 200}
    record.object_counts = {"TABLE": 21}
    record.finished_at = T0 + timedelta(hours=1, seconds=30)
    catalog.save_backup(record)

    stored = catalog.get_backup(record.id)
    assert stored == record
    assert stored.finished_at is not None and stored.finished_at.tzinfo is not None
    with pytest.raises(CatalogError):
        catalog.add_backup(record)  # the id is taken


def test_unknown_id_is_not_found(catalog: Catalog) -> None:
    with pytest.raises(NotFound, match="no backup with id 'nope'") as raised:
        catalog.get_backup("nope")
    assert raised.value.needs == "backup"  # the CLI adds "'pgvault list' shows the backups"


def test_list_filters_and_orders_newest_first(catalog: Catalog) -> None:
    rows = [
        _record(1, status="completed", environment="production"),
        _record(2, status="failed"),
        _record(3, "billing", status="completed"),
        _record(4, status="deleted"),
        _record(5, status="running"),
    ]
    for row in rows:
        catalog.add_backup(row)

    def ids(found: list[BackupRecord]) -> list[str]:
        return [r.id[-1] for r in found]

    assert ids(catalog.list_backups()) == ["5", "3", "2", "1"]  # deleted ones hidden
    assert ids(catalog.list_backups(include_deleted=True)) == ["5", "4", "3", "2", "1"]
    assert ids(catalog.list_backups(status="deleted")) == ["4"]
    assert ids(catalog.list_backups(database="app")) == ["5", "2", "1"]
    assert ids(catalog.list_backups(environment="production")) == ["1"]
    assert ids(catalog.list_backups(limit=2)) == ["5", "3"]
    assert ids(catalog.running_backups()) == ["5"]


def test_stats_count_completed_backups_only(catalog: Catalog) -> None:
    for row in [
        _record(1, status="completed", size_bytes=100),
        _record(2, status="completed", size_bytes=250),
        _record(3, status="failed", size_bytes=999),
        _record(4, "billing", status="completed"),
    ]:
        catalog.add_backup(row)

    stats = catalog.stats()

    assert [(s["database"], s["count"], s["total_bytes"]) for s in stats] == [
        ("app", 2, 350),
        ("billing", 1, 0),
    ]
    assert stats[0]["oldest"].replace(tzinfo=UTC) == T0 + timedelta(hours=1)
    assert stats[0]["newest"].replace(tzinfo=UTC) == T0 + timedelta(hours=2)


def test_restores_are_saved_and_listed(catalog: Catalog) -> None:
    run = RestoreRecord(
        id="r1", source="x", target="postgresql://db/app", dbname="app", mode="swap", started_at=T0
    )
    catalog.save_restore(run)
    run.status = "failed"
    run.error = "pg_restore failed"
    run.warnings = ["w1"]
    catalog.save_restore(run)

    assert catalog.list_restores() == [run]


def test_reopening_keeps_the_rows(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'catalog.sqlite3'}"
    first = Catalog.open(url)
    first.add_backup(_record(1))
    first.engine.dispose()

    again = Catalog.open(url)  # migrations are idempotent
    try:
        assert [r.id for r in again.list_backups()] == [_record(1).id]
    finally:
        again.engine.dispose()


def test_naive_datetimes_are_refused(catalog: Catalog) -> None:
    with pytest.raises(CatalogError):
        catalog.add_backup(_record(1, started_at=datetime(2026, 1, 1)))
