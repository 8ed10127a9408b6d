"""Restores re-check the stored bytes against the catalog's sha256 before going live."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from pgvault import backups, restores, storage
from pgvault.errors import RestoreError
from pgvault.storage.s3 import S3Storage
from support.fingerprint import database_fingerprint
from support.pgcluster import FreshPagila, PgCluster
from support.s3server import MotoServer
from support.vault import Vault


def assert_refused_as_corrupt(
    vault: Vault, pg18: PgCluster, live: str, backup_id: str, mode: str
) -> None:
    """A restore of ``backup_id`` over ``live`` fails as corrupt and changes nothing: the live
    database is as it was and no database was added or left behind."""
    before = database_fingerprint(pg18, live)
    databases_before = set(pg18.databases())
    with pytest.raises(RestoreError, match="corrupt"):
        restores.restore(
            vault.settings,
            vault.catalog,
            restores.RestoreRequest(
                target=vault.target(pg18, live),
                backup_id=backup_id,
                mode=mode,  # type: ignore[arg-type]
                confirm=live,
                safety_backup=False,
            ),
        )
    assert database_fingerprint(pg18, live) == before
    assert set(pg18.databases()) == databases_before


@pytest.mark.parametrize("mode", ["swap", "clean"])
def test_same_size_bit_rot_is_caught_before_going_live(
    tmp_path: Path, pg18: PgCluster, fresh_pagila: FreshPagila, mode: str
) -> None:
    """An uncompressed archive with flipped bytes in a COPY row still parses and loads; the
    sha256 recorded at backup time is what stops it."""
    live = fresh_pagila()
    vault = Vault.open(tmp_path / "home")
    record = backups.create(
        vault.settings,
        vault.catalog,
        backups.BackupRequest(
            target=vault.target(pg18, live), dump_format="custom", compression="none"
        ),
    )
    path = vault.stored(record)
    data = bytearray(path.read_bytes())
    spot = data.find(b"PENELOPE")  # an actor's first name inside the data of table actor
    assert spot > 0
    data[spot : spot + 8] = b"PENELOPX"
    path.write_bytes(bytes(data))
    assert_refused_as_corrupt(vault, pg18, live, record.id, mode)


def test_a_restore_from_s3_downloads_once_loads_in_parallel_and_checks_on_the_way(
    tmp_path: Path,
    pg18: PgCluster,
    fresh_pagila: FreshPagila,
    s3_env: MotoServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A swap restore of a stored custom archive on S3 downloads it once into its work
    directory, hashing it on the way, and loads that file with ``pg_restore -j``; bytes that
    differ from the catalog's sha256 (same size) stop it before anything changes, and the
    download is removed."""
    bucket = s3_env.create_bucket()
    vault = Vault.open(tmp_path / "home", default_storage=f"s3://{bucket}/pgvault")
    live = fresh_pagila()
    record = backups.create(
        vault.settings, vault.catalog, backups.BackupRequest(target=vault.target(pg18, live))
    )
    store = storage.resolve(vault.settings, record.storage)
    read = [0]  # bytes of the object read from S3
    real_get = store.client.get_object

    class Counted:
        def __init__(self, body: Any) -> None:
            self.body = body

        def read(self, size: int | None = None) -> bytes:
            data: bytes = self.body.read(size)
            read[0] += len(data)
            return data

        def close(self) -> None:
            self.body.close()

    def counted(**request: Any) -> Any:  # the real request to moto, its bytes counted
        response = real_get(**request)
        response["Body"] = Counted(response["Body"])
        return response

    monkeypatch.setattr(store.client, "get_object", counted)
    copy = f"{live}_copy"
    request = restores.RestoreRequest(
        target=vault.target(pg18, copy), backup_id=record.id, confirm=copy, safety_backup=False
    )
    planned = restores.plan(vault.settings, vault.catalog, request)
    assert planned.preview.jobs > 1 or (os.cpu_count() or 1) == 1
    read[0] = 0  # planning reads the archive's header and TOC
    try:
        restores.restore(vault.settings, vault.catalog, request)
        assert record.size_bytes is not None
        # one download, plus the plan's look at its first buffer (which layers it has); the
        # check and the load reading it each would be twice the size more
        assert record.size_bytes <= read[0] <= record.size_bytes + S3Storage.READ_BUFFER_SIZE
        assert database_fingerprint(pg18, copy) == database_fingerprint(pg18, live)
    finally:
        pg18.drop_database(copy)

    client = s3_env.client()
    key = store.object_key(record.storage_key)
    data = bytearray(client.get_object(Bucket=bucket, Key=key)["Body"].read())
    data[len(data) // 2] ^= 0xFF  # same size, one byte flipped
    client.put_object(Bucket=bucket, Key=key, Body=bytes(data))
    client.close()
    assert_refused_as_corrupt(vault, pg18, live, record.id, "swap")
    assert not list((tmp_path / "home").glob("**/stored.dump"))
    vault.close()
