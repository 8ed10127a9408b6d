"""Every failure of the ``pgvault`` command ends in one ``error:`` line on stderr that says
what went wrong, and a non-zero exit code from pgvault's error classes."""

from __future__ import annotations

import json
import socket
from pathlib import Path

from pgvault.errors import (
    EXIT_CODES,
    ArchiveError,
    BackupError,
    ConnectionFailed,
    NotFound,
    ToolError,
)
from support.pgcluster import FreshPagila, PgCluster
from support.vault import Janitor, Vault, error_line


def _closed_port() -> int:
    """A TCP port on 127.0.0.1 where nothing listens."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def test_restore_of_a_file_that_is_not_a_dump(
    pg18: PgCluster, vault: Vault, janitor: Janitor, tmp_path: Path
) -> None:
    junk = tmp_path / "notes.txt"
    junk.write_text("shopping list: eggs, milk\n")
    target = janitor.new(pg18)

    done = vault.cli(
        "restore", "--file", str(junk), "--to", pg18.url(target), "--yes", cluster=pg18
    )

    line = error_line(done)
    assert done.returncode == EXIT_CODES[ArchiveError]
    assert "not a PostgreSQL dump" in line
    assert target not in pg18.databases()


def test_unknown_backup_id(pg18: PgCluster, vault: Vault) -> None:
    shown = vault.cli("show", "20990101-000000-dead", cluster=pg18)
    restored = vault.cli(
        "restore", "20990101-000000-dead", "--to", pg18.url("nowhere"), "--yes", cluster=pg18
    )

    for done in (shown, restored):
        line = error_line(done)
        assert done.returncode == EXIT_CODES[NotFound]
        assert "no backup with id '20990101-000000-dead'" in line
        assert "pgvault list" in line  # says what to do


def test_unreachable_server(vault: Vault) -> None:
    url = f"postgresql://postgres@127.0.0.1:{_closed_port()}/app"

    done = vault.cli("backup", url, env={"PGCONNECT_TIMEOUT": "5"})

    line = error_line(done)
    assert done.returncode == EXIT_CODES[ConnectionFailed]
    assert "cannot connect to postgresql://postgres@127.0.0.1:" in line
    assert "Connection refused" in line
    assert vault.reopen_catalog().list_backups() == []  # nothing recorded


def test_wrong_password(pg18: PgCluster, fresh_pagila: FreshPagila, vault: Vault) -> None:
    db = fresh_pagila()

    done = vault.cli("backup", pg18.url(db), cluster=pg18, env={"PGPASSWORD": "not-the-one"})

    line = error_line(done)
    assert done.returncode == EXIT_CODES[ConnectionFailed]
    assert 'password authentication failed for user "postgres"' in line
    assert "not-the-one" not in done.stderr + done.stdout
    assert vault.reopen_catalog().list_backups() == []


def test_missing_pg_dump(pg18: PgCluster, fresh_pagila: FreshPagila, vault: Vault) -> None:
    db = fresh_pagila()

    done = vault.cli("backup", pg18.url(db), cluster=pg18, env={"PG_DUMP_BIN": "/nonexistent"})

    line = error_line(done)
    assert done.returncode == EXIT_CODES[ToolError]
    assert "PG_DUMP_BIN=/nonexistent is not an executable" in line
    assert vault.reopen_catalog().list_backups() == []
    assert vault.stored_files() == []


def test_backup_timeout_fails_the_row_and_leaves_no_object(
    pg18: PgCluster, fresh_pagila: FreshPagila, vault: Vault
) -> None:
    db = fresh_pagila()

    done = vault.cli(
        "backup", pg18.url(db), "--timeout", "0.001", "--format", "plain", cluster=pg18
    )

    line = error_line(done, alone=False)
    assert done.returncode == EXIT_CODES[BackupError]
    assert f"backup of {db} failed" in line
    assert "timeout" in line
    listed = vault.cli("list", "--json", cluster=pg18)
    [record] = json.loads(listed.stdout)
    assert record["status"] == "failed"
    assert "timeout" in record["error"]
    assert vault.stored_files() == []
