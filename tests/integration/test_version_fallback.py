"""The right client tools for each server, and the version fallback on a real PostgreSQL 15.

pg_dump's documentation: a dump is not guaranteed to load into an older major version, even
when taken from a server of that version. These tests dump a 15 server with pg_dump 18 (the
"only newer tools" case, forced with ``PG_DUMP_BIN``) and restore into 15.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from pgvault import backups, restores
from pgvault.backups import BackupRequest
from pgvault.postgres import tools
from pgvault.restores import RestoreRequest
from support.fingerprint import database_fingerprint, normalize_schema_dump
from support.pgcluster import REPO_ROOT, PgCluster
from support.vault import Janitor, Vault

KINDS_SQL = REPO_ROOT / "tests" / "data" / "object_kinds.sql"


def _zstd_pg_dump_18() -> Path:
    found = [t for t in tools.discover("pg_dump") if t.major == 18 and tools.zstd_build(t)] or [
        t for t in tools.discover("pg_dump") if t.major == 18
    ]
    if not found:
        pytest.skip("no pg_dump 18 installed")
    return found[0].path


def _schema(cluster: PgCluster, dbname: str) -> str:
    """A normalized ``pg_dump --schema-only`` made by the cluster's own (15) pg_dump."""
    dump = subprocess.run(
        [str(cluster.bindir / "pg_dump"), "--schema-only", "-d", dbname],
        capture_output=True,
        text=True,
        env=cluster.env(),
        check=True,
    ).stdout
    return normalize_schema_dump(dump)


def _drop_subscriptions(cluster: PgCluster, dbname: str) -> None:
    """A database holding a subscription cannot be dropped: detach and drop them first."""
    if dbname not in cluster.databases():
        return
    names = cluster.psql(
        "SELECT subname FROM pg_subscription s JOIN pg_database d "
        f"ON d.oid = s.subdbid WHERE d.datname = '{dbname}'"
    ).split()
    for name in names:
        cluster.psql(
            f"ALTER SUBSCRIPTION {name} DISABLE; ALTER SUBSCRIPTION {name} SET (slot_name = NONE);"
            f" DROP SUBSCRIPTION {name};",
            dbname=dbname,
        )


@pytest.fixture
def kinds_db(pg15: PgCluster, janitor: Janitor) -> str:
    """A 15 database holding many kinds of objects (``tests/data/object_kinds.sql``)."""
    name = janitor.new(pg15, "kinds")
    pg15.create_database(name)
    pg15.run_sql_file(KINDS_SQL, name)
    return name


def test_same_major_tools_are_chosen_for_a_15_server(
    pg15: PgCluster, vault: Vault, kinds_db: str
) -> None:
    if not any(t.major == 15 for t in tools.discover("pg_dump")):
        pytest.skip("no pg_dump 15 installed")
    record = backups.create(
        vault.settings, vault.catalog, BackupRequest(target=vault.target(pg15, kinds_db))
    )
    try:
        assert record.pg_dump_version is not None
        assert record.pg_dump_version.startswith("15.")
        # pg_dump 15 has no zstd dumps: the gzip-1 directory fallback
        assert (record.format, record.compression) == ("directory", "gzip")
    finally:
        _drop_subscriptions(pg15, kinds_db)


def test_pg18_dump_of_many_object_kinds_on_15_restores_into_15(
    pg15: PgCluster,
    vault: Vault,
    janitor: Janitor,
    kinds_db: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("PG_DUMP_BIN", str(_zstd_pg_dump_18()))
    dst = janitor.new(pg15, "kinds_copy")
    try:
        record = backups.create(
            vault.settings, vault.catalog, BackupRequest(target=vault.target(pg15, kinds_db))
        )
        assert record.pg_dump_version is not None and record.pg_dump_version.startswith("18.")
        caplog.set_level("INFO", logger="pgvault.restores.loading")

        result = restores.restore(
            vault.settings,
            vault.catalog,
            RestoreRequest(target=vault.target(pg15, dst), backup_id=record.id, confirm=dst),
        )

        assert result.status == "completed"
        fallback_lines = [r.getMessage() for r in caplog.records]
        assert any("run_as_owner = true dropped" in line for line in fallback_lines)
        assert _schema(pg15, dst) == _schema(pg15, kinds_db)
        source, copy = database_fingerprint(pg15, kinds_db), database_fingerprint(pg15, dst)
        assert copy.tables == source.tables
        assert copy.sequences == source.sequences
        assert copy.large_objects == source.large_objects != "0:-"
        kinds = pg15.psql(
            "SELECT (SELECT count(*) FROM pg_subscription s JOIN pg_database d ON d.oid ="
            f" s.subdbid WHERE d.datname = '{dst}'), (SELECT count(*) FROM pg_publication),"
            " (SELECT count(*) FROM pg_event_trigger), (SELECT count(*) FROM pg_policy),"
            " (SELECT count(*) FROM pg_foreign_server)",
            dbname=dst,
        )
        assert kinds.strip().split("|") == ["1", "3", "1", "2", "1"]
    finally:
        for name in (kinds_db, dst):
            _drop_subscriptions(pg15, name)


NEWER_CONSTRUCTS = """\
--
-- PostgreSQL database dump
--

-- Dumped from database version 15.18
-- Dumped by pg_dump version 18.6

SET statement_timeout = 0;
SET transaction_timeout = 0;
SET client_encoding = 'UTF8';
CREATE TABLE public.items (id integer PRIMARY KEY, price numeric, doubled numeric
    GENERATED ALWAYS AS (price * 2) STORED);
CREATE PUBLICATION items_pub FOR TABLE public.items WITH (publish = 'insert, update', \
publish_generated_columns = none);
CREATE SUBSCRIPTION items_sub CONNECTION 'host=127.0.0.1 port=1 dbname=nowhere' PUBLICATION \
items_pub WITH (connect = false, slot_name = 'items_sub', streaming = parallel, \
run_as_owner = true, password_required = true, origin = any, failover = false);
COPY public.items (id, price) FROM stdin;
1\t2.50
2\t3.00
\\.

--
-- PostgreSQL database dump complete
--
"""


def test_each_newer_construct_is_rewritten_for_15(
    pg15: PgCluster, vault: Vault, janitor: Janitor, tmp_path: Path
) -> None:
    """A plain dump naming pg_dump 18 with every construct 16-18 added that the fallback
    knows: PostgreSQL 15 accepts what the filter leaves."""
    dump = tmp_path / "newer.sql"
    dump.write_text(NEWER_CONSTRUCTS)
    dst = janitor.new(pg15, "newer")
    try:
        result = restores.restore(
            vault.settings,
            vault.catalog,
            RestoreRequest(target=vault.target(pg15, dst), file=dump, confirm=dst),
        )

        assert result.status == "completed"
        options = pg15.psql(
            "SELECT substream, subslotname FROM pg_subscription WHERE subname = 'items_sub'",
            dbname=dst,
        )
        assert options.strip().split("|") == ["t", "items_sub"]  # streaming = parallel -> on
        assert pg15.psql("SELECT sum(doubled) FROM items", dbname=dst).strip() == "11.00"
    finally:
        _drop_subscriptions(pg15, dst)


def test_restore_tools_follow_the_target_server_and_the_archive(
    pg15: PgCluster, vault: Vault, janitor: Janitor, kinds_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not any(t.major == 15 for t in tools.discover("pg_restore")):
        pytest.skip("no pg_restore 15 installed")
    try:
        by_15 = backups.create(
            vault.settings, vault.catalog, BackupRequest(target=vault.target(pg15, kinds_db))
        )
        monkeypatch.setenv("PG_DUMP_BIN", str(_zstd_pg_dump_18()))
        by_18 = backups.create(
            vault.settings, vault.catalog, BackupRequest(target=vault.target(pg15, kinds_db))
        )
        monkeypatch.delenv("PG_DUMP_BIN")
        dst = janitor.new(pg15, "tools")

        def planned(backup_id: str) -> restores.RestorePlan:
            request = RestoreRequest(target=vault.target(pg15, dst), backup_id=backup_id)
            return restores.plan(vault.settings, vault.catalog, request, preview=False)

        same, newer = planned(by_15.id), planned(by_18.id)

        assert (same.server_major, same.dump_major) == (15, 15)
        assert tools.probe("pg_restore", same.tools.pg_restore).major == 15
        assert (newer.server_major, newer.dump_major) == (15, 18)
        assert tools.probe("pg_restore", newer.tools.pg_restore).major == 18  # reads 18's archive
        assert tools.probe("psql", newer.tools.psql).major == 15  # the target's own psql
    finally:
        _drop_subscriptions(pg15, kinds_db)
