"""Point-in-time recovery on real servers: WAL streamed by pg_receivewal, base backups by
pg_basebackup, recovery by PostgreSQL itself (18 bundled, and 15 from Debian when present).

Rows are stamped with ``clock_timestamp()`` in batches; a time T between two batches is the
recovery target, so "exactly the rows stamped before T" is checkable row by row.
"""

from __future__ import annotations

import json
import time

import pytest

from pgvault import storage
from pgvault.catalog import physical as rows
from pgvault.errors import EXIT_CODES, RestoreError
from pgvault.operations import monitoring
from pgvault.physical import basebackup, recovery
from support.pgcluster import PgCluster
from support.pitr import (
    STAMPS,
    Pitr,
    allow_marks,
    insert_batch,
    pitr_env,
    query,
    server_now,
    stop_recovered,
)
from support.vault import error_line, unique_name


@pytest.fixture(params=["pitr18", "pitr15"])
def source(request: pytest.FixtureRequest) -> PgCluster:
    """The source server of each test: PostgreSQL 18, then 15 when installed."""
    cluster = request.getfixturevalue(request.param)
    assert isinstance(cluster, PgCluster)
    return cluster


def _database(cluster: PgCluster) -> str:
    name = unique_name("app")
    cluster.create_database(name)
    cluster.psql(STAMPS, dbname=name)
    return name


def _between_batches(env: Pitr) -> str:
    """Batch 1, then the time T (server clock), then batch 2; returns T as text."""
    insert_batch(env, 1)
    time.sleep(0.05)  # keep T strictly between the two batches' clock_timestamp()s
    moment = server_now(env.cluster)
    time.sleep(0.05)
    insert_batch(env, 2)
    return moment.isoformat(sep=" ")


def test_restore_to_a_time_then_to_latest(source: PgCluster) -> None:
    dbname = _database(source)
    with pitr_env(source, dbname) as env:
        env.start_stream()
        record = basebackup.create(
            env.settings, env.catalog, basebackup.PhysicalBackupRequest(target=env.target)
        )
        assert record.status == "completed" and record.system_identifier
        assert record.storage_key.endswith("/base.tar.zst")
        target_time = _between_batches(env)
        env.switch_and_wait()

        into = env.work / "at-t"
        done = env.cli(
            "restore",
            "--database",
            env.name,
            "--physical",
            "--target-time",
            target_time,
            "--into",
            str(into),
            "--json",
        )
        assert done.returncode == 0, done.stderr
        shown = json.loads(done.stdout)
        assert set(shown) == {"reached_time", "reached_lsn", "data_directory", "port"}
        assert shown["data_directory"] == str(into) and into.stat().st_mode & 0o777 == 0o700
        try:
            restored = query(
                source,
                shown["port"],
                dbname,
                "SELECT batch, count(*) FROM stamps GROUP BY 1 ORDER BY 1",
            )
            assert restored == "1|50"
            before = source.psql(
                f"SELECT count(*) FROM stamps WHERE at < '{target_time}'", dbname=dbname
            )
            assert before == "50"
            assert shown["reached_time"] < target_time.replace(" ", "T")
        finally:
            stop_recovered(env.settings, into, source.major)

        latest = env.work / "latest"
        request = recovery.RecoveryRequest(
            target=env.target,
            recovery_target=recovery.parse_target(latest=True),
            into=latest,
            keep_running=True,
        )
        result = recovery.run(
            env.settings, env.catalog, recovery.plan(env.settings, env.catalog, request), request
        )
        try:
            assert query(source, result.port, dbname, "SELECT count(*) FROM stamps") == "100"
        finally:
            stop_recovered(env.settings, latest, source.major)


def test_a_missing_segment_is_named_with_the_reachable_time(pitr18: PgCluster) -> None:
    dbname = _database(pitr18)
    with pitr_env(pitr18, dbname) as env:
        env.start_stream()
        basebackup.create(
            env.settings, env.catalog, basebackup.PhysicalBackupRequest(target=env.target)
        )
        insert_batch(env, 1)
        env.switch_and_wait()
        insert_batch(env, 2)
        target_time = server_now(pitr18).isoformat(sep=" ")
        insert_batch(env, 3)
        lost = env.switch_and_wait()
        record = next(r for r in rows.segments(env.catalog, database=env.name) if r.name == lost)
        storage.resolve(env.settings, record.storage).delete(record.storage_key)

        into = env.work / "restored"
        done = env.cli(
            "restore",
            "--database",
            env.name,
            "--physical",
            "--target-time",
            target_time,
            "--into",
            str(into),
        )
        assert done.returncode == EXIT_CODES[RestoreError]
        line = error_line(done, alone=False)
        assert f"WAL segment {lost} is missing from the archive" in line
        batch1_end = pitr18.psql("SELECT max(at) FROM stamps WHERE batch = 1", dbname=dbname)
        batch2_start = pitr18.psql("SELECT min(at) FROM stamps WHERE batch = 2", dbname=dbname)
        reachable = line.split("the latest time that can be reached is ", 1)[1]
        assert batch1_end.replace("+00", "") <= reachable.replace("+00:00", "")
        assert reachable.replace("+00:00", "") < batch2_start.replace("+00", "")
        assert not into.exists()  # the half-recovered directory is gone


@pytest.mark.slow
def test_restore_to_a_restore_point_and_wal_status(pitr18: PgCluster) -> None:
    dbname = _database(pitr18)
    allow_marks(pitr18, dbname)
    with pitr_env(pitr18, dbname) as env:
        env.start_stream()
        basebackup.create(
            env.settings, env.catalog, basebackup.PhysicalBackupRequest(target=env.target)
        )
        insert_batch(env, 1)
        marked = env.cli("wal", "mark", "before-batch-2", "--database", env.name)
        assert marked.returncode == 0, marked.stderr
        insert_batch(env, 2)
        env.switch_and_wait()
        shown = env.cli("wal", "status", "--database", env.name, "--json")
        assert shown.returncode == 0, shown.stderr
        status = json.loads(shown.stdout)
        for key in (
            "streaming",
            "last_archived_segment",
            "last_archived_at",
            "lag_bytes",
            "slot_retained_bytes",
            "archived_segments",
        ):
            assert key in status
        assert status["streaming"] is True and status["archived_segments"] >= 2
        assert status["lag_bytes"] < 2 * 16 * 1024 * 1024 and status["gaps"] == []
        mine = next(
            d
            for d in monitoring.health(env.settings, env.catalog).databases
            if d.database == env.name
        )
        assert (mine.status, mine.reasons) == ("ok", [])
        metrics = monitoring.metrics_text(env.settings, env.catalog).decode()
        assert f'pgvault_wal_streaming{{database="{env.name}"}} 1.0' in metrics
        assert f'pgvault_wal_gaps{{database="{env.name}"}} 0.0' in metrics

        backup_id = rows.list_backups(env.catalog, database=env.name)[0].id
        proven = env.cli("wal", "verify", backup_id, "--database", env.name, "--full", "--json")
        assert proven.returncode == 0, proven.stderr
        counts = json.loads(proven.stdout)["row_counts"]
        assert counts == {"public.stamps": 0}  # the table was empty when the backup ended
        into = env.work / "marked"
        done = env.cli(
            "restore",
            "--database",
            env.name,
            "--physical",
            "--target-name",
            "before-batch-2",
            "--into",
            str(into),
            "--json",
        )
        assert done.returncode == 0, done.stderr
        try:
            port = json.loads(done.stdout)["port"]
            assert query(pitr18, port, dbname, "SELECT count(*), max(batch) FROM stamps") == "50|1"
        finally:
            stop_recovered(env.settings, into, 18)
