"""The WAL archive on real servers: killed streams, archive_command pushes, restore_command
fetches, encrypted WAL and base backups on S3, retention, and one database recovered to a
time into another server."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
from pathlib import Path

import psutil
import pyrage
import pytest

from pgvault import storage
from pgvault.catalog import physical as rows
from pgvault.config.settings import StorageTargetSettings
from pgvault.dumps.encryption import Decryptor
from pgvault.errors import ArchiveError
from pgvault.operations import monitoring, scheduler
from pgvault.operations import physical_retention as retention
from pgvault.physical import archive as wal_archive
from pgvault.physical import basebackup, recovery, walops
from pgvault.physical import verify as physical_verify
from pgvault.physical.receiver import PID_FILE, spool_dir
from support.fingerprint import assert_same_database, database_fingerprint
from support.pgcluster import FreshPagila, PgCluster
from support.pitr import STAMPS, Pitr, insert_batch, pitr_env, query, server_now, stop_recovered
from support.s3server import MotoServer
from support.vault import PGVAULT, Janitor, unique_name


def _stamps_db(cluster: PgCluster) -> str:
    name = unique_name("app")
    cluster.create_database(name)
    cluster.psql(STAMPS, dbname=name)
    return name


def _backup(env: Pitr, incremental: bool = False) -> rows.PhysicalBackupRecord:
    request = basebackup.PhysicalBackupRequest(target=env.target, incremental=incremental)
    return basebackup.create(env.settings, env.catalog, request)


def _recover_latest(env: Pitr, into: Path) -> recovery.RecoveryResult:
    request = recovery.RecoveryRequest(
        target=env.target, recovery_target=recovery.parse_target(latest=True), into=into
    )
    return recovery.run(
        env.settings, env.catalog, recovery.plan(env.settings, env.catalog, request), request
    )


def _stream_process(env: Pitr, previous: int | None = None) -> subprocess.Popen[bytes]:
    """``pgvault wal stream`` as a child; returns once its own pg_receivewal runs."""
    (env.home / "pgvault.toml").write_text(env.config_toml())
    with open(env.home / "stream.log", "ab") as log:
        proc = subprocess.Popen(
            [str(PGVAULT), "-v", "wal", "stream", "--database", env.name],
            env=env.cli_env(),
            cwd=env.home,
            stdout=subprocess.DEVNULL,
            stderr=log,
            start_new_session=True,
        )
    pid_file = spool_dir(env.settings, env.target) / PID_FILE

    def receiving() -> bool:
        assert proc.poll() is None, "pgvault wal stream exited"
        try:
            pid = int(pid_file.read_text())
        except (OSError, ValueError):
            return False
        return pid != previous and psutil.pid_exists(pid)

    env.wait_for(receiving, "pg_receivewal to run")
    return proc


def _receiver_pid(env: Pitr) -> int:
    return int((spool_dir(env.settings, env.target) / PID_FILE).read_text())


@pytest.mark.slow
def test_killed_stream_loses_no_segment(pitr18: PgCluster) -> None:
    dbname = _stamps_db(pitr18)
    with pitr_env(pitr18, dbname) as env:
        first = _stream_process(env)
        try:
            _backup(env)
            insert_batch(env, 1)
            target_time = server_now(pitr18).isoformat(sep=" ")
            insert_batch(env, 2)
            env.switch_and_wait()
            orphan = _receiver_pid(env)
            first.send_signal(signal.SIGKILL)  # pgvault dies; its pg_receivewal lives on
            first.wait()
            insert_batch(env, 3)
            pitr18.psql("SELECT pg_switch_wal()")
            second = _stream_process(env, orphan)  # stops the orphan, drains, resumes
            assert not psutil.pid_exists(orphan) or psutil.Process(orphan).status() == "zombie"
            insert_batch(env, 4)
            env.switch_and_wait()
            receiving = _receiver_pid(env)
            os.kill(second.pid, signal.SIGKILL)  # pgvault and pg_receivewal together
            os.kill(receiving, signal.SIGKILL)
            second.wait()
            insert_batch(env, 5)
            pitr18.psql("SELECT pg_switch_wal()")
            third = _stream_process(env, receiving)
            last = env.switch_and_wait()
        finally:
            for proc in (first, locals().get("second"), locals().get("third")):
                if isinstance(proc, subprocess.Popen) and proc.poll() is None:
                    os.killpg(proc.pid, signal.SIGTERM)
                    proc.wait(60)
        assert wal_archive.gaps(env.catalog, database=env.name) == []
        archived = [r.name for r in rows.segments(env.catalog, database=env.name, history=False)]
        assert archived[-1] == last
        into = env.work / "restored"
        request = recovery.RecoveryRequest(
            target=env.target,
            recovery_target=recovery.parse_target(time=target_time),
            into=into,
        )
        result = recovery.run(
            env.settings, env.catalog, recovery.plan(env.settings, env.catalog, request), request
        )
        try:
            assert query(
                pitr18, result.port, dbname, "SELECT count(*), max(batch) FROM stamps"
            ) == ("50|1")
        finally:
            stop_recovered(env.settings, into, 18)


def test_push_is_idempotent_and_fetch_gives_the_same_bytes(pitr18: PgCluster) -> None:
    dbname = _stamps_db(pitr18)
    with pitr_env(pitr18, dbname) as env:
        insert_batch(env, 1)
        name = pitr18.psql("SELECT pg_walfile_name(pg_switch_wal())")
        original = env.work / "pg_wal" / name
        original.parent.mkdir()
        original.write_bytes((pitr18.datadir / "pg_wal" / name).read_bytes())

        pushed = env.cli("wal", "push", str(original), "--database", env.name)
        assert pushed.returncode == 0, pushed.stderr
        assert pushed.stderr.strip() == f"{name} archived"
        again = env.cli("wal", "push", str(original), "--database", env.name)
        assert (again.returncode, again.stderr.strip()) == (0, f"{name} was already archived")

        damaged = env.work / "damaged" / name
        damaged.parent.mkdir()
        data = bytearray(original.read_bytes())
        data[100] ^= 0xFF
        damaged.write_bytes(bytes(data))
        with pytest.raises(ArchiveError, match="already archived with different contents"):
            walops.push(env.settings, env.catalog, env.target, damaged)

        fetched = env.work / "RECOVERYXLOG"
        got = env.cli("wal", "fetch", name, str(fetched), "--database", env.name)
        assert got.returncode == 0, got.stderr
        assert fetched.read_bytes() == original.read_bytes()
        absent = env.cli("wal", "fetch", "0000000100000000000000FF", str(fetched), "-d", env.name)
        assert absent.returncode == 1
        refused = env.cli("wal", "fetch", "../../etc/passwd", str(fetched), "-d", env.name)
        assert refused.returncode == 2 and "not a WAL file name" in refused.stderr


@pytest.mark.slow
def test_incremental_chain_restores_identical(pitr18: PgCluster, fresh_pagila: FreshPagila) -> None:
    dbname = fresh_pagila(pitr18)
    with pitr_env(pitr18, dbname) as env:
        env.start_stream()
        full = _backup(env)
        env.sql("UPDATE customer SET last_name = upper(last_name) WHERE customer_id % 3 = 0")
        first = _backup(env, incremental=True)
        env.sql(
            "DELETE FROM payment WHERE payment_id % 5 = 0; INSERT INTO actor (first_name, "
            "last_name) SELECT 'A' || g, 'B' || g FROM generate_series(1, 500) g"
        )
        second = _backup(env, incremental=True)
        env.sql("UPDATE film SET rental_rate = rental_rate + 1 WHERE film_id < 100")
        env.switch_and_wait()
        assert (first.kind, first.parent_id, second.parent_id) == (
            "incremental",
            full.id,
            first.id,
        )
        assert second.size_bytes is not None and full.size_bytes is not None
        assert second.size_bytes < full.size_bytes
        checked = physical_verify.verify(env.settings, env.catalog, env.target, second.id)
        assert checked.ok and "every file matches the manifest" in checked.detail
        assert rows.get_backup(env.catalog, second.id).verify_status == "ok"
        expected = database_fingerprint(pitr18, dbname)
        into = env.work / "combined"
        result = _recover_latest(env, into)
        try:
            restored = dataclasses.replace(pitr18, port=result.port, _proc=None)
            assert_same_database(database_fingerprint(restored, dbname), expected)
        finally:
            stop_recovered(env.settings, into, 18)


@pytest.mark.slow
def test_one_database_at_a_time_into_another_server(
    pitr18: PgCluster,
    pg18: PgCluster,
    fresh_pagila: FreshPagila,
    janitor: Janitor,
) -> None:
    dbname = fresh_pagila(pitr18)
    with pitr_env(pitr18, dbname) as env:
        env.start_stream()
        _backup(env)
        env.sql("UPDATE customer SET email = lower(email) WHERE customer_id < 50")
        at_t = database_fingerprint(pitr18, dbname)
        target_time = server_now(pitr18).isoformat(sep=" ")
        env.sql("DELETE FROM payment; UPDATE film SET title = 'gone'")  # the accident
        env.switch_and_wait()

        live = janitor.track(pg18, fresh_pagila(pg18, unique_name("live")))
        bystander = fresh_pagila(pg18)
        pg18.psql("UPDATE actor SET last_name = 'X' WHERE actor_id < 10", dbname=bystander)
        untouched = database_fingerprint(pg18, bystander)
        done = env.cli(
            "restore",
            "--database",
            env.name,
            "--target-time",
            target_time,
            "--to",
            pg18.url(live),
            "--yes",
            "--json",
            PGPASSWORD=pg18.password,
        )
        assert done.returncode == 0, done.stderr
        shown = json.loads(done.stdout)
        assert shown["restore"]["status"] == "completed"
        assert shown["restore"]["previous_database"].startswith(f"{live}_pre_restore_")
        assert_same_database(database_fingerprint(pg18, live), at_t)
        assert_same_database(database_fingerprint(pg18, bystander), untouched)
        assert not list((env.home / "restores").iterdir())  # temporary cluster removed


def test_encrypted_wal_and_base_backups_on_s3(pitr18: PgCluster, s3_env: MotoServer) -> None:
    bucket = s3_env.create_bucket()
    identity = pyrage.x25519.Identity.generate()
    dbname = _stamps_db(pitr18)
    targets = {"offsite": StorageTargetSettings(url=f"s3://{bucket}/pitr")}
    db = {"wal_storage": ["offsite"], "encrypt_to": [str(identity.to_public())]}
    with pitr_env(pitr18, dbname, storage_targets=targets, db=db) as env:
        env.start_stream()
        record = _backup(env)
        insert_batch(env, 1)
        env.switch_and_wait()
        store = storage.resolve(env.settings, "offsite")
        keys = [info.key for info in store.list()]
        wal_keys = [k for k in keys if k.startswith(f"wal/{record.system_identifier}/00000001/")]
        assert wal_keys and all(k.endswith(".zst.age") for k in wal_keys)
        assert record.storage_key in keys and record.storage_key.endswith(".tar.zst.age")
        for key in (wal_keys[0], record.storage_key):
            assert store.read_bytes(key).startswith(b"age-encryption.org/v1")

        into = env.work / "restored"
        request = recovery.RecoveryRequest(
            target=env.target,
            recovery_target=recovery.parse_target(latest=True),
            into=into,
            decrypt=Decryptor([identity]),
        )
        plan = recovery.plan(env.settings, env.catalog, request)
        result = recovery.run(env.settings, env.catalog, plan, request)
        try:
            assert query(pitr18, result.port, dbname, "SELECT count(*) FROM stamps") == "50"
        finally:
            stop_recovered(env.settings, into, 18)
        keyless = dataclasses.replace(request, decrypt=None, into=env.work / "no-key")
        with pytest.raises(ArchiveError, match="age-encrypted"):
            recovery.run(
                env.settings,
                env.catalog,
                recovery.plan(env.settings, env.catalog, keyless),
                keyless,
            )
        assert not (env.work / "no-key").exists()


def test_retention_keeps_what_kept_backups_need(pitr18: PgCluster) -> None:
    dbname = _stamps_db(pitr18)
    db = {"retention": {"keep_last": 1, "minimum_redundancy": 1}}
    with pitr_env(pitr18, dbname, db=db) as env:
        env.start_stream()
        old = _backup(env)
        insert_batch(env, 1)
        env.switch_and_wait()
        full = _backup(env)
        insert_batch(env, 2)
        incremental = _backup(env, incremental=True)
        env.switch_and_wait()
        before = [r.name for r in rows.segments(env.catalog, database=env.name, history=False)]

        report = retention.apply(env.settings, env.catalog, env.name)
        fates = {f.backup_id: f for f in report.backups}
        assert fates[incremental.id].keep
        assert fates[full.id].keep and fates[full.id].reasons == [
            f"incremental {incremental.id} depends on it"
        ]
        assert not fates[old.id].keep
        assert rows.get_backup(env.catalog, old.id).status == "deleted"
        store = storage.resolve(env.settings, old.storage)
        assert store.stat(old.storage_key) is None
        assert full.start_wal is not None
        kept = [r.name for r in rows.segments(env.catalog, database=env.name, history=False)]
        assert kept == [n for n in before if n[8:] >= full.start_wal[8:]]
        assert report.wal_deleted == [n for n in before if n[8:] < full.start_wal[8:]]
        gone = report.wal_deleted[0]
        assert not any(k.key.endswith(f"/{gone}.zst") for k in store.list("wal/"))

        result = _recover_latest(env, env.work / "after-prune")
        try:
            assert query(pitr18, result.port, dbname, "SELECT count(*) FROM stamps") == "100"
        finally:
            stop_recovered(env.settings, env.work / "after-prune", 18)


def test_the_scheduler_streams_and_takes_scheduled_base_backups(pitr18: PgCluster) -> None:
    dbname = _stamps_db(pitr18)
    db = {
        "schedules": {"nightly": {"cron": "*/3 * * * * *", "physical": True}},
        "retention": {"keep_last": 1, "minimum_redundancy": 1},
    }
    scheduling = {"prune_cron": None, "misfire_grace_seconds": 1}
    with pitr_env(pitr18, dbname, db=db, scheduler=scheduling) as env:
        running = scheduler.start(env.settings, env.catalog)
        try:
            env.wait_for(lambda: env._streaming(), "the scheduler's WAL stream")

            def two_backups() -> bool:
                found = rows.list_backups(env.catalog, database=env.name, include_deleted=True)
                return sum(b.status in ("completed", "deleted") for b in found) >= 2

            env.wait_for(two_backups, "two scheduled base backups", seconds=120)
        finally:
            running.shutdown(60)
        found = rows.list_backups(env.catalog, database=env.name, include_deleted=True)
        ended = [b for b in found if b.status != "running"]
        assert all(b.trigger == "scheduled" and b.labels["schedule"] == "nightly" for b in ended)
        slots = [b.labels["scheduled_for"] for b in ended]
        assert len(slots) == len(set(slots))  # one base backup per slot
        assert [b.status for b in ended if b.status != "deleted"] == ["completed"]  # keep_last 1
        assert rows.get_stream(env.catalog, env.name).status == "stopped"  # type: ignore[union-attr]
        report = monitoring.health(env.settings, env.catalog)
        mine = next(d for d in report.databases if d.database == env.name)
        assert mine.last_backup_id == ended[0].id
        assert any("no WAL stream is running" in r for r in mine.reasons)  # stopped with it
