"""File snapshots of an S3 bucket (moto server over HTTP) into an S3 storage target:
500 objects of mixed sizes (one of 20 MB, so multipart both ways), content types, user
metadata, keys with spaces and non-ASCII characters; an incremental second snapshot
copies exactly the new and changed objects; each snapshot restores exactly its set."""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path
from typing import Any

import pytest

from pgvault.catalog import files as rows
from pgvault.config.settings import load_settings
from pgvault.files import restore
from pgvault.files.snapshot import SnapshotRequest, snapshot
from support.filesets import body, bucket_objects, put, write_config
from support.s3server import MotoServer
from support.vault import Vault

MB = 1_000_000


State = dict[str, tuple[str, str, dict[str, str]]]


def _put(client: Any, bucket: str, state: State, key: str, data: bytes, **extra: Any) -> None:
    """Put ``app/<key>`` and record what it must read back as."""
    extra.setdefault("ContentType", "application/octet-stream")
    put(client, bucket, "app/" + key, data, **extra)
    state[key] = (hashlib.sha256(data).hexdigest(), extra["ContentType"], extra.get("Metadata", {}))


def _fill(client: Any, bucket: str) -> State:
    rng = random.Random(20261121)
    state: State = {}
    for i in range(499):
        kind = "png" if i % 3 == 0 else "text"
        size = rng.choice((0, 1, 700, 4_000, 30_000, 120_000)) if i % 50 else 1_200_000
        name = {0: f"users/{i % 40}/avatar {i}.png", 1: f"docs/résumé {i}.txt"}.get(
            i % 5, f"日本/写真-{i}.json"
        )
        extra: dict[str, Any] = {
            "ContentType": "image/png" if kind == "png" else "text/plain; charset=utf-8",
            "Metadata": {"owner": f"user-{i % 40}", "index": str(i)},
        }
        if i % 7 == 0:
            extra["CacheControl"] = "max-age=3600"
        _put(client, bucket, state, name, body(rng, size, kind), **extra)
    _put(
        client,
        bucket,
        state,
        "big/archive 20mb.png",
        body(rng, 20 * MB, "png"),
        ContentType="image/png",
    )
    put(client, bucket, "app/upload.tmp", b"excluded")
    put(client, bucket, "other/outside.txt", b"not under the prefix")
    return state


@pytest.mark.slow
def test_incremental_snapshots_of_a_bucket_restore_exactly_their_set(
    s3_env: MotoServer, vault: Vault, tmp_path: Path
) -> None:
    client = s3_env.client()
    source, offsite = s3_env.create_bucket(), s3_env.create_bucket()
    before = _fill(client, source)
    settings = load_settings(
        write_config(
            vault.home,
            f"""
[storage_targets.offsite]
url = "s3://{offsite}/pgvault"
[files.images]
source = "s3://{source}/app"
storage = ["offsite"]
exclude = ["*.tmp"]
""",
        ),
        home=vault.home,
    )
    assert len(before) == 500

    done = vault.cli("files", "snapshot", "images", "--json")
    assert done.returncode == 0, done.stderr
    first = json.loads(done.stdout)
    assert first["objects"] == first["copied_objects"] == 500
    assert first["copied_bytes"] == first["bytes"] > 20 * MB

    after = dict(before)
    rng = random.Random(7)
    keys = sorted(before)
    for key in keys[10:20]:
        _put(client, source, after, key, body(rng, 5_000, "text"), ContentType="text/csv")
    for n in range(5):
        _put(client, source, after, f"new/añadido {n}.txt", b"new %d" % n, Metadata={"n": str(n)})
    for key in keys[100:105]:
        client.delete_object(Bucket=source, Key="app/" + key)
        del after[key]
    assert len(after) == 500

    catalog = vault.reopen_catalog()
    second = snapshot(settings, catalog, SnapshotRequest(file_set="images"))
    assert second.objects == 500
    assert second.copied_objects == 15  # exactly the 10 changed and 5 new objects

    shown = rows.get_snapshot(catalog, first["id"])
    assert shown.consistency == "window" and "may be missing" in (shown.detail or "")
    assert (shown.stored_blobs or 0) < 500  # identical contents stored once
    stored = client.list_objects_v2(Bucket=offsite, Prefix="pgvault/files/images/blobs/")
    big = [o for o in stored.get("Contents", []) if o["Size"] > 19 * MB]
    assert len(big) == 1 and "-" in big[0]["ETag"]  # the 20 MB blob went up in parts

    target = s3_env.create_bucket()
    done = vault.cli("files", "restore", first["id"], "--to", f"s3://{target}/r", "--yes", "--json")
    assert done.returncode == 0, done.stderr
    restored = json.loads(done.stdout)
    assert restored["restored_objects"] == 500 and restored["skipped_unchanged"] == 0
    assert restored["deleted_extra"] == 0 and restored["safety_snapshot_id"] is None
    assert bucket_objects(client, target, "r/") == before  # key, sha256, type, metadata
    assert "-" in client.head_object(Bucket=target, Key="r/big/archive 20mb.png")["ETag"]

    other = s3_env.create_bucket()
    request = restore.FileRestoreRequest(second.id, to=f"s3://{other}/r")
    assert restore.run(settings, catalog, request).restored_objects == 500
    assert bucket_objects(client, other, "r/") == after
    client.close()
