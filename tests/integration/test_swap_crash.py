"""A crash in the middle of a swap never leaves the team without its database (issue 9,
point 2): pgvault is SIGKILLed at every journaled step (the test-only kill point), then any
command runs; the live name answers and holds the whole old or the whole new content, no
scratch database is left, no restore row stays ``running``, ``--leftovers`` never offers a
live database, and ``doctor`` reports what it cannot repair."""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator

import pytest

from pgvault import backups, runtime
from pgvault.backups import BackupRequest
from pgvault.catalog import Catalog
from pgvault.catalog import journal as journal_rows
from pgvault.catalog.journal import JournalEntry
from pgvault.catalog.records import BackupRecord
from pgvault.operations import startup
from pgvault.restores.journal import SWAP_STEPS, TEST_ONLY_KILL_AT
from pgvault.restores.steps import PRE_RESTORE_MARK, SCRATCH_MARK
from support.fingerprint import Fingerprint, database_fingerprint
from support.forker import Forker
from support.pgcluster import PgCluster
from support.vault import Janitor, Vault, clean_env

SMALL = (
    "CREATE TABLE a AS SELECT g AS id, md5(g::text) AS t FROM generate_series(1, 2000) g;"
    "CREATE TABLE b (id int PRIMARY KEY, v text);"
    "INSERT INTO b SELECT g, repeat('x', g % 50) FROM generate_series(1, 500) g;"
)
# How the next process starts after the kill: a CLI command, or any process's start.
NEXT = {
    "planned": ("list", "--json"),
    "loading": None,
    "proven": None,
    "blocking": None,
    "live_renamed": ("restore", "--repair"),
    "scratch_renamed": "leftovers",
    "swapped": None,
}


@pytest.fixture(scope="module")
def forker() -> Iterator[Forker]:
    """Forks pgvault processes to SIGKILL (see :mod:`support.forker`)."""
    started = Forker(clean_env())
    yield started
    started.close()


def _live_with_backup(
    pg18: PgCluster, vault: Vault, janitor: Janitor
) -> tuple[str, BackupRecord, Fingerprint, Fingerprint]:
    """A small live database, a backup of it, then a change: ``(name, backup, the backup's
    content, the live content now)``."""
    live = janitor.new(pg18, "swap")
    pg18.create_database(live)
    pg18.psql(SMALL, live)
    request = BackupRequest(target=vault.target(pg18, live), dump_format="custom")
    record = backups.create(vault.settings, vault.catalog, request)
    new = database_fingerprint(pg18, live)
    pg18.psql("INSERT INTO a VALUES (-1, 'changed since'); DELETE FROM b WHERE id < 100", live)
    return live, record, new, database_fingerprint(pg18, live)


@pytest.mark.parametrize("step", SWAP_STEPS)
def test_kill_at_each_swap_step_leaves_the_live_database_whole(
    pg18: PgCluster,
    vault: Vault,
    janitor: Janitor,
    forker: Forker,
    step: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    live, record, new, old = _live_with_backup(pg18, vault, janitor)
    vault.close()

    pid = forker.start(  # a pgvault process restoring, SIGKILLed by the test-only kill point
        run="restore",
        home=str(vault.home),
        url=pg18.url(live, with_password=True),
        backup_id=record.id,
        kill_at=step,
    )

    assert forker.wait(pid) == -signal.SIGKILL
    command = NEXT[step]
    if command == "leftovers":
        listed = vault.cli("restore", "--leftovers", "--to", pg18.url(live), cluster=pg18)
        assert listed.returncode == 0, listed.stderr
        assert listed.stdout.split() == []  # the old live one is back, nothing else to offer
    elif command is not None:
        done = vault.cli(*command, cluster=pg18)
        assert done.returncode == 0, done.stderr
    else:  # an API or scheduler start, with the server's password in its environment
        monkeypatch.setenv("PGPASSWORD", pg18.password)
        startup.recover(vault.settings, vault.reopen_catalog())
    catalog = vault.reopen_catalog()

    assert database_fingerprint(pg18, live) == (new if step == "swapped" else old)
    assert pg18.psql(f"SELECT datallowconn FROM pg_database WHERE datname = '{live}'") == "t"
    assert not [db for db in pg18.databases() if SCRATCH_MARK in db]
    [restore] = catalog.list_restores()
    assert restore.status == "interrupted"
    assert f"interrupted at step {step}" in (restore.error or "")
    assert ("rolled forward" if step == "swapped" else "rolled back") in (restore.error or "")
    assert journal_rows.open_entries(catalog) == []
    previous = [db for db in pg18.databases() if db.startswith(f"{live}{PRE_RESTORE_MARK}")]
    assert len(previous) == (1 if step == "swapped" else 0)


def test_the_cli_kill_point_is_the_same(pg18: PgCluster, vault: Vault, janitor: Janitor) -> None:
    """The CLI honours the test-only kill point (read from the environment at import)."""
    live, record, _new, old = _live_with_backup(pg18, vault, janitor)
    vault.close()
    killed = vault.cli(
        "restore", record.id, "--to", pg18.url(live), "--yes", "--no-safety-backup",
        cluster=pg18,
        env={TEST_ONLY_KILL_AT: "scratch_renamed"},
    )  # fmt: skip
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert live not in pg18.databases()  # the state a crash between the renames leaves
    done = vault.cli("backup", pg18.url(live), "--no-globals", cluster=pg18)  # any command
    assert done.returncode == 0, done.stderr
    assert database_fingerprint(pg18, live) == old


def test_a_whole_swap_closes_its_journal_and_leftovers_offer_only_the_previous(
    pg18: PgCluster, vault: Vault, janitor: Janitor
) -> None:
    live, record, new, _old = _live_with_backup(pg18, vault, janitor)
    vault.close()

    done = vault.cli(
        "restore", record.id, "--to", pg18.url(live), "--yes", "--no-safety-backup", "--json",
        cluster=pg18,
    )  # fmt: skip
    listed = vault.cli("restore", "--leftovers", "--to", pg18.url(live), cluster=pg18)

    assert done.returncode == 0, done.stderr
    previous = json.loads(done.stdout)["previous_database"]
    assert listed.stdout.split() == [previous]
    assert database_fingerprint(pg18, live) == new
    catalog = vault.reopen_catalog()
    assert journal_rows.open_entries(catalog) == []
    assert catalog.list_restores()[0].status == "completed"


def test_doctor_reports_what_pgvault_left_closed_and_could_not_repair(
    pg18: PgCluster, vault: Vault, janitor: Janitor
) -> None:
    closed = janitor.track(pg18, f"app{PRE_RESTORE_MARK}20260101_000000")
    pg18.create_database(closed)
    pg18.psql(f'ALTER DATABASE "{closed}" ALLOW_CONNECTIONS false')
    now = runtime.now()
    unreachable = JournalEntry(  # a run on a server that is gone: nothing can repair it now
        id="20260101-000000-dead",
        kind="swap",
        step="live_renamed",
        server="postgresql://postgres@127.0.0.1:1",
        conn_params={"host": "127.0.0.1", "port": "1", "user": "postgres", "dbname": "x"},
        dbname="x",
        scratch=f"x{SCRATCH_MARK}20260101_000000",
        previous=f"x{PRE_RESTORE_MARK}20260101_000000",
        started_at=now,
        updated_at=now,
    )
    journal_rows.add_entry(vault.catalog, unreachable)
    (vault.home / "pgvault.toml").write_text(
        f'[databases.app]\nurl = "{pg18.url("postgres", with_password=True)}"\n'
    )
    vault.close()

    done = vault.cli("doctor", "--json", cluster=pg18)

    checks = {c["name"]: c for c in json.loads(done.stdout)}
    assert done.returncode == 1
    report = checks["restores"]
    assert not report["ok"]
    assert f"{closed} on postgresql://postgres@127.0.0.1:{pg18.port} refuses" in report["detail"]
    assert "restore 20260101-000000-dead of x" in report["detail"]
    assert Catalog.open(vault.settings.catalog_location).list_restores() == []
