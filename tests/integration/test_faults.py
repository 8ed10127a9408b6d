"""Faults give one clear line and leave nothing behind (issue 9, point 6): a full disk
during a backup in any format, a killed backup's work directory (under PGVAULT_HOME/tmp,
removed by the next start), and a restore error that names its real first cause."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pgvault import backups, databases, restores
from pgvault.backups import BackupRequest
from pgvault.config.settings import load_settings
from pgvault.errors import EXIT_CODES, BackupError, RestoreError
from pgvault.restores import RestoreRequest
from support.forker import Forker
from support.pgcluster import PgCluster
from support.vault import Janitor, Vault, clean_env, error_line


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB file system (tmpfs) for a storage target; needs root (the tests run as root
    in CI) and is skipped otherwise."""
    where = tmp_path / "small"
    where.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m,mode=0700", "tmpfs", str(where)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {done.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def test_a_full_disk_fails_the_backup_in_one_line_in_every_format(
    pg18: PgCluster, vault: Vault, janitor: Janitor, small_disk: Path
) -> None:
    db = janitor.new(pg18, "full")
    pg18.create_database(db)
    pg18.psql(
        "CREATE TABLE t AS SELECT g, md5(g::text) || md5((g * 3)::text) AS x "
        "FROM generate_series(1, 150000) g",
        db,
    )
    (vault.home / "pgvault.toml").write_text(f'[storage_targets.small]\nurl = "{small_disk}"\n')
    settings = load_settings(home=vault.home, storage_targets={"small": {"url": str(small_disk)}})
    lines = {}
    for dump_format in ("directory", "plain"):
        request = BackupRequest(
            target=vault.target(pg18, db), dump_format=dump_format, compression="none",
            storage="small",
        )  # fmt: skip
        with pytest.raises(BackupError) as caught:
            backups.create(settings, vault.catalog, request)
        lines[dump_format] = f"error: {caught.value}"
    vault.close()
    done = vault.cli(  # the CLI: one line, exit 8
        "backup", pg18.url(db), "--storage", "small", "--format", "custom",
        "--compression", "none", cluster=pg18,
    )  # fmt: skip
    assert done.returncode == EXIT_CODES[BackupError], done.stderr
    lines["custom"] = error_line(done)

    for dump_format, line in lines.items():
        assert line.startswith(f"error: backup of {db} failed: storage target 'small' is full: ")
        assert f"bytes left on {small_disk}" in line, (dump_format, line)
    rows = vault.reopen_catalog().list_backups()
    assert [r.status for r in rows] == ["failed"] * 3
    assert [p for p in small_disk.rglob("*") if p.is_file()] == []  # no partial left


def test_a_killed_backups_work_directory_is_under_home_and_removed_at_the_next_start(
    pg18: PgCluster, vault: Vault, janitor: Janitor
) -> None:
    db = janitor.new(pg18, "work")
    pg18.create_database(db)
    pg18.psql(
        "CREATE TABLE t AS SELECT g, repeat(md5(g::text), 4) AS x "
        "FROM generate_series(1, 150000) g",
        db,
    )
    work = vault.home / "tmp"
    forker = Forker(clean_env())
    try:
        pid = forker.start(
            run="backup",
            home=str(vault.home),
            url=pg18.url(db, with_password=True),
            dump_format="directory",
        )
        deadline = time.monotonic() + 120
        found: list[Path] = []
        while time.monotonic() < deadline and not found:
            if work.is_dir():
                found = [p for p in work.rglob("*.dat*") if p.stat().st_size > 0]
            time.sleep(0.02)
        assert found, "pg_dump never wrote into PGVAULT_HOME/tmp"
        os.kill(pid, signal.SIGKILL)
        assert forker.wait(pid) == -signal.SIGKILL
    finally:
        forker.close()
    assert list(work.iterdir())  # the kill left its work directory (pg_dump's files) behind

    done = vault.cli("list", cluster=pg18)  # the next start

    assert done.returncode == 0, done.stderr
    deadline = time.monotonic() + 30  # pg_dump's workers end on their broken connection
    while any(work.iterdir()) and time.monotonic() < deadline:
        time.sleep(0.2)
        vault.cli("list", cluster=pg18)
    assert list(work.iterdir()) == []
    assert vault.reopen_catalog().list_backups()[0].status == "interrupted"


def test_a_restore_error_names_its_real_first_cause(
    pg18: PgCluster, pg15: PgCluster, vault: Vault, janitor: Janitor
) -> None:
    """A dump of pg_dump 18 carries ``SET transaction_timeout``, which PostgreSQL 15 rejects
    first; the real cause of the failure is the missing role."""
    role = janitor.track_role(pg18, f"appowner_{os.getpid()}")
    db = janitor.new(pg18, "cause")
    pg18.psql(f'CREATE ROLE "{role}"; CREATE DATABASE "{db}"')
    pg18.psql(f'CREATE TABLE t (id int); ALTER TABLE t OWNER TO "{role}"', db)
    record = backups.create(
        vault.settings,
        vault.catalog,
        BackupRequest(target=vault.target(pg18, db), dump_format="custom", with_globals=False),
    )
    target = janitor.new(pg15, "cause")
    settings = vault.settings

    with pytest.raises(RestoreError) as caught:
        restores.restore(
            settings,
            vault.catalog,
            RestoreRequest(
                target=databases.from_url(settings, pg15.url(target, with_password=True)),
                backup_id=record.id,
                confirm=target,
            ),
        )

    message = str(caught.value)
    assert f'role "{role}" does not exist' in message, message
    assert "transaction_timeout" not in message
    assert target not in pg15.databases()
