"""The WAL archive's catalog rows on a SQLite catalog: gaps, the recoverable window and the
health of a ``pitr = true`` database (no server involved)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from pgvault.catalog import Catalog
from pgvault.catalog import physical as rows
from pgvault.catalog.physical import PhysicalBackupRecord, WalSegmentRecord, WalStreamRecord
from pgvault.config.settings import load_settings
from pgvault.physical import archive, status, walnames

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def _segment(number: int, minutes: int) -> WalSegmentRecord:
    name = walnames.Segment(1, number).name()
    return WalSegmentRecord(
        system_identifier="42",
        name=name,
        timeline=1,
        segment_number=number,
        database="app",
        storage="local",
        storage_key=archive.segment_key("42", name, encrypted=False),
        size_bytes=100,
        sha256="0" * 64,
        wal_size_bytes=16 * 1024 * 1024,
        wal_sha256="1" * 64,
        archived_at=NOW + timedelta(minutes=minutes),
    )


def _catalog(tmp_path: Path) -> Catalog:
    return Catalog.open(f"sqlite:///{tmp_path / 'catalog.sqlite3'}")


def test_gaps_window_and_health(tmp_path: Path) -> None:
    catalog = _catalog(tmp_path)
    settings = load_settings(
        home=tmp_path, databases={"app": {"url": "postgresql://db/app", "pitr": True}}
    )
    level, reasons = status.health(settings, catalog, "app", NOW)
    assert level == "critical" and "no completed physical base backup" in reasons[0]
    rows.save_backup(
        catalog,
        PhysicalBackupRecord(
            id="b1",
            database="app",
            server="db:5432",
            storage="local",
            storage_key="base/42/b1/base.tar.zst",
            status="completed",
            system_identifier="42",
            start_wal=walnames.Segment(1, 2).name(),
            stop_wal=walnames.Segment(1, 2).name(),
            started_at=NOW,
            finished_at=NOW + timedelta(minutes=1),
        ),
    )
    for number, minutes in ((2, 1), (3, 2), (4, 3), (7, 6), (8, 7)):
        rows.save_segment(catalog, _segment(number, minutes))

    found = archive.gaps(catalog, database="app")
    assert [(g.first, g.last, g.after_segment) for g in found] == [
        ("000000010000000000000005", "000000010000000000000006", "000000010000000000000004")
    ]
    window = status.recoverable_window(catalog, "app")
    assert window.start == NOW + timedelta(minutes=1)
    assert window.end == NOW + timedelta(minutes=3)  # cut at the gap, not at segment 8
    assert window.base_backups == 1 and len(window.gaps) == 1

    rows.save_stream(
        catalog,
        WalStreamRecord(
            database="app",
            slot="pgvault_app",
            status="streaming",
            runner="elsewhere:1",
            heartbeat_at=NOW,
            slot_retained_bytes=2 * 1024**3,
        ),
    )
    level, reasons = status.health(settings, catalog, "app", NOW + timedelta(seconds=5))
    assert level == "critical"
    assert reasons[0].startswith("WAL 000000010000000000000005 to 000000010000000000000006")
    assert any("retains 2048 MiB" in r for r in reasons)
    assert not any("no WAL stream" in r for r in reasons)
    later = status.health(settings, catalog, "app", NOW + timedelta(minutes=5))[1]
    assert any("no WAL stream is running" in r for r in later)  # the heartbeat went stale
    catalog.engine.dispose()
