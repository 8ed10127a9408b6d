"""Retention applied for real (issue 16): real pg_dump backups of a small database, a real
catalog, local storage and the moto S3 server.

* a schedule that fails every run for 31 nights under ``max_age_days = 30``, with the
  cleanup schedule running after each, deletes nothing, warns in health and notifies once;
  ``pgvault prune --force`` then keeps the 3 newest (``minimum_redundancy``) and writes its
  reason to the audit log;
* per-target policies keep 2 copies on local disk and 10 on S3, and the backups that lost
  their local copy are still read (and verified) from S3;
* copies under S3 Object Lock (period from the retention policy) are skipped without an
  error, unlocked ones are deleted with every version.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pgvault import backups, databases, storage
from pgvault.backups import copies
from pgvault.catalog import audit
from pgvault.catalog import retention as holds
from pgvault.catalog.records import BackupRecord
from pgvault.config.settings import load_settings
from pgvault.operations import monitoring, prune, schedules, verify
from pgvault.operations.scheduler import Scheduler
from support.pgcluster import PgCluster
from support.receivers import Webhook, free_port, webhook
from support.s3server import MotoServer
from support.vault import Vault, unique_name

NOW = datetime.now(UTC)


@pytest.fixture
def small_db(pg18: PgCluster) -> Iterator[str]:
    """A database with one small table: its backups take a fraction of a second."""
    name = unique_name("ret")
    pg18.create_database(name)
    pg18.psql(
        "CREATE TABLE t AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 500) g", name
    )
    yield name
    pg18.drop_database(name)


@pytest.fixture
def hook() -> Iterator[Webhook]:
    with webhook() as receiver:
        yield receiver


def _backup(vault: Vault, database: str = "app") -> BackupRecord:
    target = databases.from_config(vault.settings, database)
    request = backups.BackupRequest(target, dump_format="plain", compression="none")
    return backups.create(vault.settings, vault.catalog, request)


def _age(vault: Vault, record: BackupRecord, started: datetime) -> None:
    """Make a backup look older (its started and finished times)."""
    record.started_at, record.finished_at = started, started + timedelta(seconds=1)
    vault.catalog.save_backup(record)


def _write_config(home: Path, text: str) -> Path:
    home.mkdir(parents=True, exist_ok=True)
    path = home / "pgvault.toml"
    path.write_text(text)
    return path


def test_failing_schedule_deletes_nothing_warns_once_and_force_keeps_the_floor(
    pg18: PgCluster, small_db: str, tmp_path: Path, hook: Webhook
) -> None:
    home = tmp_path / "home"
    config = """
[databases.app]
url = "{url}"
[databases.app.schedules.nightly]
cron = "0 2 * * *"
[databases.app.retention]
max_age_days = 30
[notifications]
urls = ["{hook}"]
[scheduler]
prune_cron = "17 * * * *"
"""
    good = _write_config(
        home, config.format(url=pg18.url(small_db, with_password=True), hook=hook.apprise_url())
    )
    vault = Vault.open(home)
    vault.settings = load_settings(good, home=home)
    made = [_backup(vault) for _ in range(5)]
    for age, record in zip(range(45, 40, -1), made, strict=True):
        _age(vault, record, NOW - timedelta(days=age))  # five daily backups, 41-45 days old
    closed = f"postgresql://app@127.0.0.1:{free_port()}/app"
    failing = _write_config(home, config.format(url=closed, hook=hook.apprise_url()))
    vault.settings = load_settings(failing, home=home)
    sched = Scheduler(vault.settings, vault.catalog)
    [nightly] = [s for s in schedules.configured(vault.settings) if s.name == "nightly"]

    for day in range(31):  # 31 nights the schedule fails; the cleanup runs after each
        assert sched.run_backup(nightly, NOW - timedelta(days=30 - day)) is None
        sched.run_prune(None)

    rows = vault.catalog.list_backups()
    assert sorted(r.status for r in rows) == ["completed"] * 5 + ["failed"] * 31
    held = [m for m in hook.received if "retention of app is held" in m["title"]]
    assert len(held) == 1, [m["title"] for m in hook.received]
    assert "nothing is deleted while the newest backup attempt" in held[0]["message"]
    hold = holds.get_hold(vault.catalog, "app")
    assert hold is not None and hold.notified_at is not None and rows[0].id in hold.reason
    [health] = monitoring.health(vault.settings, vault.catalog).databases
    assert any(r.startswith("retention held: the newest backup attempt") for r in health.reasons)

    dry = vault.cli("prune", "--dry-run", "--show-kept")
    assert dry.returncode == 0, dry.stderr
    assert "retention of app is held: the newest backup attempt" in dry.stderr
    assert "0 backup(s) would be deleted, 36 kept" in dry.stderr
    plain = vault.cli("prune", "--json")
    assert plain.returncode == 0 and not any(i["deleted"] for i in json.loads(plain.stdout))
    assert len(vault.catalog.list_backups(status="completed")) == 5

    forced = vault.cli("prune", "--force", "--reason", "database moved; old dumps are useless")
    assert forced.returncode == 0, forced.stderr
    kept = vault.catalog.list_backups(status="completed")
    assert [r.id for r in kept] == [r.id for r in made[-3:]][::-1]  # the 3 newest
    for record in made[:2]:
        assert not vault.stored(record).exists()
    [event] = audit.search(vault.catalog, action="retention force")
    assert event.actor is not None and event.actor.startswith("cli")
    assert event.detail is not None and "database moved; old dumps are useless" in event.detail
    assert "the newest backup attempt" in event.detail and "2 deletion(s)" in event.detail
    refused = vault.cli("delete", kept[-1].id, "--yes")
    assert refused.returncode == 11 and "minimum_redundancy 3" in refused.stderr
    vault.close()


def test_per_target_policies_keep_2_local_and_10_on_s3(
    pg18: PgCluster, small_db: str, tmp_path: Path, s3_env: MotoServer
) -> None:
    bucket = s3_env.create_bucket()
    home = tmp_path / "home"
    vault = Vault.open(
        home,
        storage_targets={
            "local": {"url": str(tmp_path / "local")},
            "offsite": {"url": f"s3://{bucket}/pgvault"},
        },
        databases={
            "app": {
                "url": pg18.url(small_db, with_password=True),
                "storage": ["local", "offsite"],
                "retention": {"keep_last": 10, "local": {"keep_last": 2}},
            }
        },
    )
    made = [_backup(vault) for _ in range(12)]
    for hours, record in zip(range(12, 0, -1), made, strict=True):
        _age(vault, record, NOW - timedelta(hours=hours))

    items = prune.apply(vault.settings, vault.catalog, database="app").items

    assert not any(i.error for i in items)
    local = {i.key for i in storage.resolve(vault.settings, "local").list()}
    remote = {i.key for i in storage.resolve(vault.settings, "offsite").list()}
    newest_first = made[::-1]
    assert [r.id for r in newest_first if r.storage_key in local] == [r.id for r in made[-2:]][::-1]
    assert [r.id for r in newest_first if r.storage_key in remote] == [
        r.id for r in newest_first[:10]
    ]
    for keys, count in ((local, 2), (remote, 10)):  # object, globals and manifest of each
        assert all(any(k.startswith(r.storage_key) for r in newest_first[:count]) for k in keys)
        assert len(keys) == 3 * count
    rows = {r.id: r for r in vault.catalog.list_backups(include_deleted=True)}
    assert [rows[r.id].status for r in newest_first] == ["completed"] * 10 + ["deleted"] * 2
    third = rows[newest_first[2].id]
    assert third.storage == "offsite"  # its local copy is gone: S3 holds it now
    assert copies.readable_location(vault.settings, vault.catalog, third).name == "offsite"
    assert verify.verify(vault.settings, vault.catalog, third.id).ok
    [copy_row] = [c for c in vault.catalog.copies_of([third.id])[third.id] if c.storage == "local"]
    assert copy_row.status == "deleted"
    again = prune.apply(vault.settings, vault.catalog, database="app").items
    assert not any(i.deleted or any(c.deleted for c in i.copies) for i in again)
    vault.close()


def test_locked_copies_are_skipped_without_error_and_unlocked_ones_go_with_every_version(
    pg18: PgCluster, small_db: str, tmp_path: Path, s3_env: MotoServer
) -> None:
    bucket = f"pgv-ret-lock-{unique_name('b').split('_')[1]}"
    client = s3_env.client()
    client.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
    home = tmp_path / "home"

    def settings(lock: bool) -> Vault:
        return Vault.open(
            home,
            storage_targets={
                "local": {"url": str(tmp_path / "local")},
                "offsite": {"url": f"s3://{bucket}/pgvault", "object_lock": lock},
            },
            databases={
                "app": {
                    "url": pg18.url(small_db, with_password=True),
                    "storage": ["local", "offsite"],
                    "retention": {"keep_last": 1, "max_age_days": 2, "minimum_redundancy": 1},
                }
            },
        )

    before = settings(lock=False)
    unlocked = _backup(before)  # written before the target had Object Lock
    before.close()
    vault = settings(lock=True)
    locked = [_backup(vault) for _ in range(2)]
    head = client.head_object(Bucket=bucket, Key=f"pgvault/{locked[0].storage_key}")
    until = head["ObjectLockRetainUntilDate"]
    written = locked[0].started_at, locked[0].finished_at or datetime.now(UTC)
    slack = timedelta(minutes=1)
    assert written[0] + timedelta(days=2) - slack < until < written[1] + timedelta(days=2) + slack
    for days, record in zip((9, 8), (unlocked, locked[0]), strict=True):
        _age(vault, record, NOW - timedelta(days=days))  # both out of max_age and keep_last

    items = {i.backup_id: i for i in prune.apply(vault.settings, vault.catalog).items}

    assert not any(i.error for i in items.values()), [i.error for i in items.values()]
    gone, skipped = items[unlocked.id], items[locked[0].id]
    assert gone.deleted and [c.deleted for c in gone.copies] == [True, True]
    versions = client.list_object_versions(Bucket=bucket, Prefix=f"pgvault/{unlocked.storage_key}")
    assert versions.get("Versions", []) == [] and versions.get("DeleteMarkers", []) == []
    assert skipped.keep and not skipped.deleted
    [(local, l_deleted), (offsite, o_deleted)] = [(c.target, c.deleted) for c in skipped.copies]
    assert (local, l_deleted, offsite, o_deleted) == ("local", True, "offsite", False)
    assert skipped.copies[1].reasons[0].startswith("object lock until ")
    row = vault.catalog.get_backup(locked[0].id)
    assert row.status == "completed" and row.storage == "offsite"
    again = prune.apply(vault.settings, vault.catalog).items
    assert not any(i.error for i in again)
    client.close()
    vault.close()
