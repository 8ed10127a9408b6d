"""Backups to S3 through the domain API, against a moto server over HTTP and PostgreSQL 18."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pyrage
import pytest

from pgvault import backups, restores, storage
from pgvault.backups import copies
from pgvault.config.settings import StorageTargetSettings, load_settings
from pgvault.dumps.encryption import Decryptor
from pgvault.errors import BackupError, StorageError
from support.fingerprint import assert_same_database, database_fingerprint
from support.pgcluster import FreshPagila, PgCluster
from support.s3server import MotoServer
from support.vault import Vault, unique_name


def _vault(tmp_path: Path, url: str) -> Vault:
    return Vault.open(tmp_path / "home", default_storage=url)


def test_missing_bucket_fails_before_pg_dump(
    tmp_path: Path, pg18: PgCluster, fresh_pagila: FreshPagila, s3_env: MotoServer
) -> None:
    vault = _vault(tmp_path, "s3://no-such-bucket-pgv/backups")
    with pytest.raises(StorageError) as caught:
        backups.create(
            vault.settings,
            vault.catalog,
            backups.BackupRequest(target=vault.target(pg18, fresh_pagila())),
        )
    assert str(caught.value) == (
        "S3 bucket 'no-such-bucket-pgv' does not exist or is not accessible "
        "with the configured credentials"
    )
    assert vault.catalog.list_backups(include_deleted=True) == []  # pg_dump never started


def test_encrypted_backup_to_s3_restores_identical(
    tmp_path: Path, pg18: PgCluster, fresh_pagila: FreshPagila, s3_env: MotoServer
) -> None:
    bucket = s3_env.create_bucket()
    identity = pyrage.x25519.Identity.generate()
    source = fresh_pagila()
    vault = _vault(tmp_path, f"s3://{bucket}/prod")
    record = backups.create(
        vault.settings,
        vault.catalog,
        backups.BackupRequest(
            target=vault.target(pg18, source),
            dump_format="custom",
            recipients=[str(identity.to_public())],
        ),
    )
    keys = [o.key for o in storage.resolve(vault.settings).list()]
    assert record.storage_key in keys and record.manifest_key in keys
    target = unique_name("s3enc")
    restores.restore(
        vault.settings,
        vault.catalog,
        restores.RestoreRequest(
            target=vault.target(pg18, target),
            backup_id=record.id,
            confirm=target,
            decrypt=Decryptor([identity]),
        ),
    )
    assert_same_database(database_fingerprint(pg18, source), database_fingerprint(pg18, target))
    pg18.drop_database(target)


def test_s3_frozen_mid_backup_leaves_nothing(
    tmp_path: Path, pg18: PgCluster, s3_env: MotoServer
) -> None:
    """The S3 server stops answering while parts upload: the backup ends ``failed``, nothing
    is listed, and no multipart upload stays open once the server is back."""
    bucket = s3_env.create_bucket()
    db = unique_name("big")
    pg18.create_database(db)
    pg18.psql(
        "CREATE TABLE noise AS SELECT g, md5(g::text) || md5((g * 7)::text) AS t "
        "FROM generate_series(1, 1500000) g",
        db,
    )
    target = StorageTargetSettings(
        url=f"s3://{bucket}/prod", part_size_mib=5, max_attempts=1, read_timeout=2
    )
    vault = Vault.open(tmp_path / "home")
    settings = load_settings(home=tmp_path / "home", storage_targets={"s3": target})
    done = threading.Event()

    def freeze_once_running() -> None:
        # Freeze the server as soon as the backup's row exists (its storage check already
        # passed), so its first upload request hangs past the 2 s read timeout; thaw it a
        # few seconds later, while the failed backup's cleanup is still retrying.
        deadline = time.monotonic() + 60
        while not done.is_set() and time.monotonic() < deadline:
            if any(r.status == "running" for r in vault.catalog.list_backups()):
                s3_env.pause()
                time.sleep(4)
                s3_env.resume()
                return
            time.sleep(0.02)

    freezer = threading.Thread(target=freeze_once_running)
    freezer.start()
    try:
        with pytest.raises(BackupError):
            backups.create(
                settings,
                vault.catalog,
                backups.BackupRequest(
                    target=vault.target(pg18, db),
                    storage="s3",
                    dump_format="plain",
                    compression="none",
                ),
            )
    finally:
        done.set()
        freezer.join()
        s3_env.resume()
    [record] = vault.catalog.list_backups(include_deleted=True)
    assert record.status == "failed"
    assert "S3" in (record.error or "") or "timed out" in (record.error or ""), record.error
    assert s3_env.open_uploads(bucket) == []  # pgvault's own cleanup aborted the upload
    assert list(storage.resolve(settings, "s3").list()) == []
    pg18.drop_database(db)


def test_second_copy_on_s3_has_same_sha256_and_object_lock(
    tmp_path: Path, pg18: PgCluster, fresh_pagila: FreshPagila, s3_env: MotoServer
) -> None:
    bucket = f"pgv-lock-{unique_name('b').split('_')[1]}"
    client = s3_env.client()
    client.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
    vault = Vault.open(tmp_path / "home")
    settings = load_settings(
        home=tmp_path / "home",
        storage_targets={
            "local": StorageTargetSettings(url=str(tmp_path / "local")),
            "offsite": StorageTargetSettings(url=f"s3://{bucket}/copies", object_lock_days=7),
        },
    )
    source = fresh_pagila()
    target = vault.target(pg18, source)
    record = backups.create(
        settings, vault.catalog, backups.BackupRequest(target=target, storage="local")
    )

    [copy] = copies.replicate(settings, vault.catalog, record, ["offsite"])
    assert copy.status == "completed" and copy.sha256 == record.sha256
    head = client.head_object(Bucket=bucket, Key=f"copies/{record.storage_key}")
    assert head["ObjectLockMode"] == "COMPLIANCE"
    assert head["ObjectLockRetainUntilDate"].timestamp() > time.time() + 6 * 86400
    client.close()
