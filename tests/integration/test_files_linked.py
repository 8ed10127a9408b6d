"""One recovery point: ``pgvault backup --database app`` takes the linked snapshot of the
app's versioned bucket as of the dump's snapshot point, so objects deleted or overwritten
after that point come back as they were; ``pgvault restore ID --with-files`` restores the
files first (after a safety snapshot of the bucket) and swaps the database in last."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import pytest

from pgvault import backups, databases, files
from pgvault.catalog import files as rows
from pgvault.config.settings import load_settings
from pgvault.files import restore
from support.filesets import bucket_objects, put, toml_str, versioned_bucket, write_config
from support.fingerprint import assert_same_database, database_fingerprint
from support.pgcluster import FreshPagila, PgCluster
from support.s3server import MotoServer
from support.vault import Janitor, Vault


def _wait_past(moment: float) -> None:
    """Until the wall clock is in a later whole second than ``moment`` (S3 timestamps
    have one-second resolution), so later writes are surely newer than it."""
    boundary = math.floor(moment) + 1.05
    while time.time() < boundary:
        time.sleep(0.05)


@pytest.mark.slow
def test_linked_snapshot_restores_files_as_of_the_backup(
    pg18: PgCluster,
    fresh_pagila: FreshPagila,
    s3_env: MotoServer,
    vault: Vault,
    janitor: Janitor,
    tmp_path: Path,
) -> None:
    db = janitor.track(pg18, fresh_pagila())
    client = s3_env.client()
    bucket = versioned_bucket(s3_env)
    for key, data in (("a.png", b"a v1"), ("b.txt", b"b v1"), ("keep me.txt", b"kept")):
        put(client, bucket, f"img/{key}", data, ContentType="text/plain", Metadata={"v": "1"})
    url = pg18.url(db, with_password=True)
    config = write_config(
        vault.home,
        f"""
[files.images]
source = "s3://{bucket}/img"
[databases.app]
url = {toml_str(url)}
files = ["images"]
""",
    )
    linked_settings = load_settings(config, home=vault.home)
    unlinked = load_settings(config, home=vault.home, databases={"app": {"url": url, "files": []}})

    done = vault.cli("backup", "--database", "app", cluster=pg18)
    assert done.returncode == 0, done.stderr
    assert "file snapshot fs-" in done.stderr and "of images completed" in done.stderr
    catalog = vault.reopen_catalog()
    [first] = catalog.list_backups(database="app")
    [snap] = rows.linked_snapshots(catalog, [first.id])[first.id]
    assert snap.status == "completed" and snap.consistency == "versioned" and snap.objects == 3
    shown = vault.cli("show", first.id, cluster=pg18)
    assert "linked file snapshots" in shown.stdout and snap.id in shown.stdout
    listed = json.loads(vault.cli("list", "--json", cluster=pg18).stdout)
    assert listed[0]["files"] == "images:completed"

    target = databases.from_config(unlinked, "app")
    record = backups.create(unlinked, catalog, backups.BackupRequest(target=target))
    assert rows.linked_snapshots(catalog, [record.id]) == {}
    _wait_past(record.started_at.timestamp())
    client.delete_object(Bucket=bucket, Key="img/a.png")
    put(client, bucket, "img/b.txt", b"b v2", ContentType="text/plain", Metadata={"v": "2"})
    put(client, bucket, "img/c.txt", b"after the backup", ContentType="text/plain")

    [linked] = files.snapshot_for_backup(linked_settings, catalog, record)
    assert linked.status == "completed" and linked.backup_id == record.id
    assert linked.as_of == record.started_at and linked.objects == 3
    empty = s3_env.create_bucket()
    request = restore.FileRestoreRequest(linked.id, to=f"s3://{empty}/x")
    restore.run(linked_settings, catalog, request)
    as_of_backup = {
        "a.png": bucket_objects(client, empty, "x/")["a.png"],
        "b.txt": bucket_objects(client, empty, "x/")["b.txt"],
    }
    assert set(bucket_objects(client, empty, "x/")) == {"a.png", "b.txt", "keep me.txt"}
    assert as_of_backup["b.txt"][2] == {"v": "1"}

    original = database_fingerprint(pg18, db)
    pg18.psql("DELETE FROM payment; DELETE FROM rental", dbname=db)
    restored = vault.cli(
        "restore", record.id, "--database", "app", "--with-files", "--yes", cluster=pg18
    )
    assert restored.returncode == 0, restored.stderr
    assert_same_database(original, database_fingerprint(pg18, db))
    now = bucket_objects(client, bucket, "img/")
    assert now["a.png"] == as_of_backup["a.png"] and now["b.txt"] == as_of_backup["b.txt"]
    assert "c.txt" in now  # nothing deleted without --delete-extra
    catalog = vault.reopen_catalog()
    [safety] = rows.list_snapshots(catalog, file_set="images", statuses=("completed",), limit=1)
    assert safety.trigger == "pre-restore" and safety.objects == 3  # b v2, c, keep me
    client.close()
