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


def _small_database(cluster: PgCluster, janitor: Janitor) -> tuple[str, str]:
    """A small live database owned by a non-superuser role: ``(dbname, owner)``."""
    live, owner = janitor.owned(cluster, "live")
    cluster.psql(
        "CREATE TABLE kept AS SELECT g AS id, md5(g::text) AS note FROM generate_series(1, 500) g;"
        f"ALTER TABLE kept OWNER TO {owner}",
        live,
    )
    return live, owner


def test_meta_commands_in_a_plain_file_are_refused_and_run_nothing(
    pg18: PgCluster, vault: Vault, janitor: Janitor, tmp_path: Path, marker_dir: Path
) -> None:
    live, _owner = _small_database(pg18, janitor)
    before = database_fingerprint(pg18, live)
    marker = marker_dir / "ran"
    refused = {}
    for command, payload in _payloads(marker).items():
        evil = tmp_path / f"evil{len(refused)}.sql"
        evil.write_text(_plain(payload))
        for superuser in (False, True):  # refused either way
            request = RestoreRequest(
                target=vault.target(pg18, live), file=evil, confirm=live, as_superuser=superuser
            )
            with pytest.raises(ArchiveError) as caught:
                restores.restore(vault.settings, vault.catalog, request)
            refused[command, superuser] = str(caught.value)
    evil.write_text(_plain(_payloads(marker)["\\!"]))
    done = vault.cli(  # the CLI says it in one line, exit 7, before anything starts
        "restore", "--file", str(evil), "--to", pg18.url(live), "--yes", cluster=pg18
    )

    for (command, _superuser), message in refused.items():
        assert message == f"this dump contains psql meta-commands ({command}) at line 7: refused"
    assert len(refused) == 10
    assert done.returncode == EXIT_CODES[ArchiveError], done.stderr
    assert (
        error_line(done) == "error: this dump contains psql meta-commands (\\!) at line 7: refused"
    )
    assert vault.reopen_catalog().list_restores() == []  # refused before any restore began
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


def test_an_upload_runs_with_the_owners_privileges_only(
    tmp_path: Path, pg18: PgCluster, janitor: Janitor, marker_dir: Path
) -> None:
    live, _owner = _small_database(pg18, janitor)
    before = database_fingerprint(pg18, live)
    marker = marker_dir / "ran"
    role = janitor.track_role(pg18, f"evil_{os.getpid()}")
    settings_before = pg18.psql("SELECT sourcefile, name, setting FROM pg_file_settings")
    server = ApiServer.start(tmp_path / "home", databases={"app": database_entry(pg18, live)})
    jobs = {}
    try:
        with server.client(server.token("admin")) as admin:
            for name, template in UPLOADS.items():
                body = template.format(marker=marker, role=role)
                answer = admin.post(
                    "/databases/app/restore-upload",
                    files={"file": ("evil.sql", _plain(body).encode())},
                    data={"confirm": "app"},
                )
                assert answer.status_code == 202, answer.text
                jobs[name] = server.wait_job(answer.json()["id"], server.token("admin"))
    finally:
        server.stop()
    for name, job in jobs.items():
        assert job["status"] == "failed", (name, job)
        assert "permission denied" in job["error"], (name, job["error"])
    assert not marker.exists()
    assert pg18.psql(f"SELECT count(*) FROM pg_roles WHERE rolname = '{role}'") == "0"
    assert pg18.psql("SELECT sourcefile, name, setting FROM pg_file_settings") == settings_before
    assert_same_database(before, database_fingerprint(pg18, live))
    assert pg18.psql("SELECT count(*) FROM pg_roles WHERE rolname LIKE 'pgvault_load_%'") == "0"
