"""SQL pgvault did not write never runs code on the host (issue 9, point 1): psql
meta-commands in a plain file, a globals file or an upload are refused before anything runs;
the globals file is checked against its own sha256; SQL from outside runs with the target
owner's privileges (CREATE ROLE ... SUPERUSER, ALTER SYSTEM, COPY ... TO PROGRAM fail), so
nothing on the host, in the roles or in the server's settings changes."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from pgvault import backups, restores
from pgvault.backups import BackupRequest
from pgvault.config.settings import load_settings
from pgvault.dumps.psqlguard import restrict_key
from pgvault.errors import EXIT_CODES, ArchiveError, RestoreError, ToolError
from pgvault.postgres import conninfo, runner
from pgvault.postgres.commands import psql_command
from pgvault.restores import RestoreRequest
from support.apiserver import ApiServer, database_entry
from support.fingerprint import assert_same_database, database_fingerprint
from support.pgcluster import FreshPagila, PgCluster
from support.vault import Janitor, Vault, error_line

TRAILER = "\n--\n-- PostgreSQL database dump complete\n--\n"


@pytest.fixture
def marker_dir(tmp_path: Path) -> Path:
    """A directory anyone may write (the server's OS user too): where a payload that ran
    would leave its marker file."""
    where = tmp_path / "markers"
    where.mkdir()
    where.chmod(0o777)
    return where


def _payloads(marker: Path) -> dict[str, str]:
    """One plain-SQL file per meta-command, each of which would create ``marker``."""
    return {
        "\\!": f"\\! touch {marker}\n",
        "\\o": f"\\o {marker}\nSELECT 1;\n",
        "\\copy": f"\\copy (SELECT 1) to program 'touch {marker}'\n",
        "\\gexec": f"SELECT format('COPY (SELECT 1) TO PROGRAM %L', 'touch {marker}') \\gexec\n",
        "\\setenv": f"\\setenv MARK {marker}\n\\! touch $MARK\n",
    }


def _plain(body: str) -> str:
    head = "--\n-- PostgreSQL database dump\n--\n\nSET statement_timeout = 0;\n"
    return f"{head}CREATE TABLE t (id int);\n{body}{TRAILER}"


@pytest.mark.parametrize("command", ["\\!", "\\o", "\\copy", "\\gexec", "\\setenv"])
def test_meta_commands_in_a_plain_file_are_refused_and_run_nothing(
    pg18: PgCluster,
    fresh_pagila: FreshPagila,
    vault: Vault,
    janitor: Janitor,
    tmp_path: Path,
    marker_dir: Path,
    command: str,
) -> None:
    live = janitor.track(pg18, fresh_pagila())
    before = database_fingerprint(pg18, live)
    marker = marker_dir / "ran"
    evil = tmp_path / "evil.sql"
    evil.write_text(_plain(_payloads(marker)[command]))

    done = vault.cli(
        "restore",
        "--file",
        str(evil),
        "--to",
        pg18.url(live),
        "--yes",
        "--as-superuser",
        cluster=pg18,
    )

    assert done.returncode == EXIT_CODES[ArchiveError], done.stderr
    assert error_line(done) == (
        f"error: this dump contains psql meta-commands ({command}) at line 7: refused"
    )
    assert not marker.exists()
    assert_same_database(before, database_fingerprint(pg18, live))
    assert not [db for db in pg18.databases() if "_pgvault_" in db or "_pre_restore_" in db]


def test_psql_runs_in_restricted_mode_even_if_the_guard_missed_a_command(
    pg18: PgCluster, tmp_path: Path, marker_dir: Path
) -> None:
    """The second layer: what pgvault feeds psql starts with \\restrict and a fresh key, so
    psql itself refuses a meta-command (here sent straight to psql, past the guard)."""
    tools = restores.client_tools(load_settings(home=tmp_path / "home"))
    assert tools.psql_restrict
    marker = marker_dir / "ran"
    info = conninfo.parse(pg18.url("postgres", with_password=True))
    argv = psql_command(tools.psql, info.dsn(), single_transaction=True)
    script = f"\\restrict {restrict_key()}\nSELECT 1;\n\\! touch {marker}\n".encode()
    with pytest.raises(ToolError, match="restricted"):
        runner.run(argv, env=info.child_env(), input_bytes=script)
    assert not marker.exists()


def test_globals_file_is_checked_by_its_sha256_and_for_meta_commands(
    pg18: PgCluster, fresh_pagila: FreshPagila, vault: Vault, janitor: Janitor, marker_dir: Path
) -> None:
    source = fresh_pagila()
    record = backups.create(
        vault.settings, vault.catalog, BackupRequest(target=vault.target(pg18, source))
    )
    assert record.globals_key and record.globals_sha256
    manifest = (vault.backups_dir / record.manifest_key).read_text()
    assert record.globals_sha256 in manifest  # the manifest repeats it
    stored = vault.backups_dir / record.globals_key
    marker = marker_dir / "ran"
    stored.write_bytes(stored.read_bytes() + f"\\! touch {marker}\n".encode())
    target = janitor.new(pg18, "glob")

    def restore() -> None:
        restores.restore(
            vault.settings,
            vault.catalog,
            RestoreRequest(
                target=vault.target(pg18, target),
                backup_id=record.id,
                confirm=target,
                with_globals=True,
            ),
        )

    with pytest.raises(RestoreError, match="nothing changed.*differs from its recorded sha256"):
        restore()
    # Even when the sha256 matches (a catalog written by someone else), the line is refused.
    record.globals_sha256 = hashlib.sha256(stored.read_bytes()).hexdigest()
    vault.catalog.save_backup(record)
    with pytest.raises(RestoreError, match=r"psql meta-commands \(\\!\) at line \d+: refused"):
        restore()
    assert not marker.exists()
    assert target not in pg18.databases()


UPLOADS = {
    "copy to program": "COPY (SELECT 1) TO PROGRAM 'touch {marker}';\n",
    "create role": "CREATE ROLE {role} SUPERUSER LOGIN;\n",
    "commit escape": (
        "CREATE ROLE {role} SUPERUSER LOGIN;\nCOMMIT;\n"
        "ALTER SYSTEM SET work_mem = '77MB';\nBEGIN;\n"
    ),
    "alter system": "COMMIT;\nALTER SYSTEM SET work_mem = '77MB';\nBEGIN;\n",
}


@pytest.mark.parametrize("payload", sorted(UPLOADS))
def test_an_upload_runs_with_the_owners_privileges_only(
    tmp_path: Path,
    pg18: PgCluster,
    fresh_pagila: FreshPagila,
    janitor: Janitor,
    marker_dir: Path,
    payload: str,
) -> None:
    live, owner = janitor.owned(pg18, "evil")
    pg18.psql(f"CREATE TABLE kept AS SELECT 1 AS x; ALTER TABLE kept OWNER TO {owner}", live)
    before = database_fingerprint(pg18, live)
    marker = marker_dir / "ran"
    role = janitor.track_role(pg18, f"evil_{os.getpid()}")
    body = UPLOADS[payload].format(marker=marker, role=role)
    settings_before = pg18.psql("SELECT sourcefile, name, setting FROM pg_file_settings")
    server = ApiServer.start(tmp_path / "home", databases={"app": database_entry(pg18, live)})
    try:
        with server.client(server.token("admin")) as admin:
            answer = admin.post(
                "/databases/app/restore-upload",
                files={"file": ("evil.sql", _plain(body).encode())},
                data={"confirm": "app"},
            )
            assert answer.status_code == 202, answer.text
            job = server.wait_job(answer.json()["id"], server.token("admin"))
    finally:
        server.stop()
    assert job["status"] == "failed", job
    assert "permission denied" in job["error"] or "must be superuser" in job["error"], job
    assert not marker.exists()
    assert pg18.psql(f"SELECT count(*) FROM pg_roles WHERE rolname = '{role}'") == "0"
    assert pg18.psql("SELECT sourcefile, name, setting FROM pg_file_settings") == settings_before
    assert_same_database(before, database_fingerprint(pg18, live))
    assert pg18.psql("SELECT count(*) FROM pg_roles WHERE rolname LIKE 'pgvault_load_%'") == "0"
