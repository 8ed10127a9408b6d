"""Every start asks in one query whether a dead process left anything unfinished
(:func:`pgvault.catalog.unfinished.unfinished`), in SQLite and in a PostgreSQL catalog: an
empty catalog says nothing; a ``running`` backup, a ``running`` file snapshot and an open
restore journal row each turn their own flag on; rows that ended do not; and
:func:`pgvault.operations.startup.recover` still repairs each kind, after which the
question finds nothing again.
"""

from __future__ import annotations

import secrets
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pgvault import runtime
from pgvault.catalog import Catalog
from pgvault.catalog import files as file_rows
from pgvault.catalog import journal as journal_rows
from pgvault.catalog.files import FileSnapshotRecord
from pgvault.catalog.journal import JournalEntry
from pgvault.catalog.unfinished import Unfinished, unfinished
from pgvault.config.settings import Settings, load_settings
from pgvault.operations import startup
from support.catalog_rows import synthetic_record
from support.pgcluster import PgCluster

NOW = datetime.now(UTC)


def _dead_runner() -> str:
    child = subprocess.Popen(["true"])
    child.wait()
    return f"{runtime.runner_id().rpartition(':')[0]}:{child.pid}"


@pytest.fixture(params=["sqlite", "postgresql"])
def opened(
    request: pytest.FixtureRequest, tmp_path: Path, pg18: PgCluster
) -> Iterator[tuple[Settings, Catalog]]:
    """Settings naming ``app`` on the session's PG 18, and an empty catalog of either kind."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'catalog.sqlite3'}"
        name = None
    else:
        name = f"catalog_{secrets.token_hex(4)}"
        pg18.create_database(name)
        url = pg18.url(name, with_password=True)
    home = tmp_path / "home"
    home.mkdir()
    (home / "pgvault.toml").write_text(
        f'[databases.app]\nurl = "{pg18.url("postgres", with_password=True)}"\n'
    )
    settings = load_settings(home / "pgvault.toml", home=home, catalog_url=url)
    catalog = Catalog.open(settings.catalog_location)
    yield settings, catalog
    catalog.engine.dispose()
    if name is not None:
        pg18.drop_database(name)


def test_each_kind_of_unfinished_row_is_found_and_repaired(
    opened: tuple[Settings, Catalog], pg18: PgCluster, tmp_path: Path
) -> None:
    settings, catalog = opened
    nothing = Unfinished(backups=False, snapshots=False, restores=False)
    assert unfinished(catalog) == nothing and not unfinished(catalog)

    ended = synthetic_record(0, 3, 10, NOW)
    assert ended.status == "completed"
    catalog.save_backup(ended)
    assert unfinished(catalog) == nothing

    backup = synthetic_record(0, 0, 10, NOW)
    backup.id, backup.status, backup.runner = "running-backup", "running", _dead_runner()
    backup.storage = str(tmp_path / "backups")
    catalog.save_backup(backup)
    assert unfinished(catalog) == Unfinished(backups=True, snapshots=False, restores=False)

    snapshot = FileSnapshotRecord(
        id="fs-running",
        file_set="up",
        source=str(tmp_path / "uploads"),
        storage=str(tmp_path / "backups"),
        manifest_key="m",
        index_key="i",
        started_at=NOW - timedelta(minutes=1),
        runner=_dead_runner(),
    )
    file_rows.save_snapshot(catalog, snapshot)
    assert unfinished(catalog) == Unfinished(backups=True, snapshots=True, restores=False)

    missing = f"gone_{secrets.token_hex(4)}"  # nothing was live: the repair drops the scratch
    entry = JournalEntry(
        id="20260101-000000-dead",
        kind="swap",
        step="loading",
        server=f"postgresql://postgres@127.0.0.1:{pg18.port}",
        conn_params={
            "host": "127.0.0.1",
            "port": str(pg18.port),
            "user": "postgres",
            "dbname": missing,
        },
        dbname=missing,
        scratch=f"{missing}_scratch",
        started_at=NOW,
        updated_at=NOW,
    )
    journal_rows.add_entry(catalog, entry)
    assert unfinished(catalog) == Unfinished(backups=True, snapshots=True, restores=True)

    found = startup.recover(settings, catalog)

    assert [r.id for r in found.backups] == ["running-backup"]
    assert [s.id for s in found.snapshots] == ["fs-running"]
    assert [r.entry_id for r in found.restores] == [entry.id]
    assert catalog.get_backup("running-backup").status == "interrupted"
    assert file_rows.get_snapshot(catalog, "fs-running").status == "interrupted"
    closed = journal_rows.get_entry(catalog, entry.id)
    assert closed is not None and closed.finished_at is not None
    assert unfinished(catalog) == nothing
