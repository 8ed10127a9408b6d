"""The storage contract of :class:`S3Storage`, against a real S3 API (moto server over HTTP).

Each test uses its own bucket on the session's ``moto_server``; the AWS chain finds the server
through ``s3_env`` (``AWS_ENDPOINT_URL`` and dummy keys, set with monkeypatch). Tests that
stop or freeze a server start a private one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from pgvault import backups, databases, restores, storage
from pgvault.catalog import Catalog
from pgvault.config.settings import StorageTargetSettings, load_settings
from pgvault.errors import ConfigError, NotFound, StorageError
from pgvault.storage.s3 import MiB, S3Storage
from pgvault.storage.s3_errors import PROBE_NAME
from support.fingerprint import assert_same_database, database_fingerprint
from support.pgcluster import FreshPagila, PgCluster
from support.s3server import SECRET_ACCESS_KEY, MotoServer
from support.vault import Janitor

PATTERN = os.urandom(MiB)  # written over and over by the large-stream tests


def make_store(url: str, **options: object) -> S3Storage:
    """An S3Storage for ``url``; ``options`` split between target settings and tuning kwargs."""
    tuning = {k: options.pop(k) for k in list(options) if k in _TUNING}
    return S3Storage(StorageTargetSettings(url=url, **options), **tuning)  # type: ignore[arg-type]


_TUNING = ("part_size", "max_attempts", "connect_timeout", "read_timeout")


@pytest.fixture
def bucket(s3_env: MotoServer) -> str:
    """A new empty bucket on the session's moto server."""
    return s3_env.create_bucket()


@pytest.fixture
def store(bucket: str) -> S3Storage:
    """``s3://<bucket>/pgvault`` with the smallest part size S3 allows (5 MiB)."""
    return make_store(f"s3://{bucket}/pgvault", part_size=S3Storage.MIN_PART_SIZE)


def write_chunks(store: S3Storage, key: str, data: bytes, chunk: int) -> None:
    writer = store.open_write(key)
    for start in range(0, len(data), chunk):
        assert writer.write(data[start : start + chunk]) == len(data[start : start + chunk])
    writer.commit()


def sha256_of_stream(stream: object, chunk: int = MiB) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    while block := stream.read(chunk):  # type: ignore[attr-defined]
        digest.update(block)
        size += len(block)
    return digest.hexdigest(), size


def test_multipart_round_trip(store: S3Storage, s3_env: MotoServer, bucket: str) -> None:
    data = os.urandom(12 * MiB)
    writer = store.open_write("app/2026/11/21/x.dump")
    for start in range(0, len(data), 700 * 1024):  # chunks that straddle part boundaries
        writer.write(data[start : start + 700 * 1024])
    s3_env.wait_for_parts(bucket, "pgvault/app/2026/11/21/x.dump", 2)  # sent from a thread
    assert store.stat("app/2026/11/21/x.dump") is None  # invisible until commit
    info = writer.commit()

    assert (info.key, info.size) == ("app/2026/11/21/x.dump", len(data))
    client = s3_env.client()
    head = client.head_object(Bucket=bucket, Key="pgvault/app/2026/11/21/x.dump")
    client.close()
    assert head["ETag"].strip('"').endswith("-3")  # 5 + 5 + 2 MiB
    assert s3_env.open_uploads(bucket) == []
    with store.open_read("app/2026/11/21/x.dump") as stream:
        assert stream.read(10) == data[:10]
        assert sha256_of_stream(stream) == (hashlib.sha256(data[10:]).hexdigest(), len(data) - 10)
    stat = store.stat("app/2026/11/21/x.dump")
    assert stat is not None and stat.size == len(data)
    assert stat.modified.utcoffset() is not None and stat.modified.utcoffset().total_seconds() == 0


def test_a_part_uploads_while_the_next_fills_and_one_at_a_time(
    store: S3Storage, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full part goes to the uploader thread: ``write`` returns while it is on its way (the
    producer, pg_dump, keeps going), and the part after it waits for it (two in memory)."""
    release, sending, numbers = threading.Event(), threading.Event(), []
    real = store.client.upload_part

    def held_back(**request: Any) -> Any:  # the real request to moto, part 1 held back
        numbers.append(request["PartNumber"])
        if request["PartNumber"] == 1:
            sending.set()
            assert release.wait(30)
        return real(**request)

    monkeypatch.setattr(store.client, "upload_part", held_back)
    data = os.urandom(11 * MiB)
    writer = store.open_write("db/overlap.dump")
    writer.write(data[: 7 * MiB])  # part 1 (5 MiB) handed over and held; 2 MiB buffered
    assert sending.wait(30) and numbers == [1]
    filled = threading.Event()

    def fill_part_2() -> None:
        writer.write(data[7 * MiB :])  # part 2 is full with more after it: it waits for part 1
        filled.set()

    second = threading.Thread(target=fill_part_2)
    second.start()
    assert not filled.wait(0.5), "part 2 was handed over while part 1 was still on its way"
    release.set()
    second.join(30)
    assert filled.is_set()
    info = writer.commit()  # part 3: the last 1 MiB

    assert numbers == [1, 2, 3] and info.size == len(data)
    with store.open_read("db/overlap.dump") as stream:
        assert sha256_of_stream(stream) == (hashlib.sha256(data).hexdigest(), len(data))


def test_small_objects_use_one_put(store: S3Storage, s3_env: MotoServer, bucket: str) -> None:
    assert store.write_bytes("a.manifest.json", b'{"x": 1}').size == 8
    empty = store.open_write("empty")
    assert empty.commit().size == 0
    exact = store.open_write("exact")  # exactly one part: one put as well
    exact.write(PATTERN * 5)
    assert exact.commit().size == 5 * MiB

    assert store.read_bytes("a.manifest.json") == b'{"x": 1}'
    assert store.read_bytes("empty") == b""
    assert (
        hashlib.sha256(store.read_bytes("exact")).digest() == hashlib.sha256(PATTERN * 5).digest()
    )
    client = s3_env.client()
    keys = ("pgvault/a.manifest.json", "pgvault/exact")
    etags = [client.head_object(Bucket=bucket, Key=key)["ETag"] for key in keys]
    client.close()
    assert not any("-" in etag for etag in etags)  # a multipart upload's ETag has "-<parts>"


@pytest.mark.parametrize("size", [1024, 6 * MiB], ids=["put", "multipart"])
def test_encryption_and_storage_class(s3_env: MotoServer, bucket: str, size: int) -> None:
    store = make_store(
        f"s3://{bucket}/enc",
        sse="AES256",
        storage_class="STANDARD_IA",
        part_size=S3Storage.MIN_PART_SIZE,
    )
    write_chunks(store, "k", os.urandom(size), MiB)
    client = s3_env.client()
    head = client.head_object(Bucket=bucket, Key="enc/k")
    client.close()
    assert head["ServerSideEncryption"] == "AES256"
    assert head["StorageClass"] == "STANDARD_IA"
    assert store.stat("k") is not None


def test_kms_encryption_is_requested(s3_env: MotoServer, bucket: str) -> None:
    store = make_store(f"s3://{bucket}", sse="aws:kms", sse_kms_key_id="alias/pgvault-test")
    store.write_bytes("k", b"secret dump")
    client = s3_env.client()
    head = client.head_object(Bucket=bucket, Key="k")
    client.close()
    assert head["ServerSideEncryption"] == "aws:kms"
    assert "pgvault-test" in head["SSEKMSKeyId"]


def test_abort_leaves_nothing(store: S3Storage, s3_env: MotoServer, bucket: str) -> None:
    writer = store.open_write("db/x.dump")
    writer.write(PATTERN * 7)  # one part on its way, 2 MiB buffered
    s3_env.wait_for_parts(bucket, "pgvault/db/x.dump", 1)
    assert len(s3_env.open_uploads(bucket)) == 1
    writer.abort()
    writer.abort()  # twice is fine

    assert list(store.list()) == []
    assert s3_env.open_uploads(bucket) == []
    assert store.stat("db/x.dump") is None
    with pytest.raises(StorageError, match="aborted"):
        writer.write(b"more")
    with pytest.raises(StorageError, match="aborted"):
        writer.commit()


def test_abort_before_any_part_sends_nothing(store: S3Storage, s3_env: MotoServer) -> None:
    writer = store.open_write("db/y.dump")
    writer.write(b"small")
    writer.abort()
    assert list(store.list()) == []
    assert s3_env.open_uploads(store.bucket) == []


def test_discard_partial_aborts_a_crashed_writers_upload(
    store: S3Storage, s3_env: MotoServer, bucket: str
) -> None:
    crashed = store.open_write("db/x.dump")
    crashed.write(PATTERN * 6)
    sibling = store.open_write("db/x.dump.manifest.json")  # same prefix, another key
    sibling.write(PATTERN * 6)
    s3_env.wait_for_parts(bucket, "pgvault/db/x.dump", 1)
    s3_env.wait_for_parts(bucket, "pgvault/db/x.dump.manifest.json", 1)
    del crashed  # never committed nor aborted, like a killed process
    assert sorted(u["Key"] for u in s3_env.open_uploads(bucket)) == [
        "pgvault/db/x.dump",
        "pgvault/db/x.dump.manifest.json",
    ]

    later = make_store(store.url)  # e.g. the next pgvault process
    later.discard_partial("db/x.dump")
    later.discard_partial("db/never-written.dump")

    assert [u["Key"] for u in s3_env.open_uploads(bucket)] == ["pgvault/db/x.dump.manifest.json"]
    assert list(later.list()) == []
    sibling.abort()
    assert s3_env.open_uploads(bucket) == []


def test_list_is_relative_sorted_and_paginated(
    store: S3Storage, s3_env: MotoServer, bucket: str
) -> None:
    for key in ("apx/c", "app/2026/b.dump", "other/d", "app/2026/a.dump", "app/z"):
        store.write_bytes(key, key.encode())
    client = s3_env.client()
    for outside in ("pgvault-other/x", "root-object", "pgvault/app/"):  # the last: a folder marker
        client.put_object(Bucket=bucket, Key=outside, Body=b"")
    client.close()
    store.LIST_PAGE_SIZE = 2  # type: ignore[misc]  # force several ListObjectsV2 pages

    everything = list(store.list())
    assert [i.key for i in everything] == [
        "app/2026/a.dump",
        "app/2026/b.dump",
        "app/z",
        "apx/c",
        "other/d",
    ]
    assert everything[0].size == len("app/2026/a.dump")
    assert all(i.modified.utcoffset() is not None for i in everything)
    assert [i.key for i in store.list("app/")] == ["app/2026/a.dump", "app/2026/b.dump", "app/z"]
    assert [i.key for i in store.list("ap")] == [
        "app/2026/a.dump",
        "app/2026/b.dump",
        "app/z",
        "apx/c",
    ]
    assert list(store.list("nothing/")) == []
    bucket_root = make_store(f"s3://{bucket}")
    assert [i.key for i in bucket_root.list("pgvault-other")] == ["pgvault-other/x"]


def test_stat_delete_and_missing_objects(store: S3Storage) -> None:
    store.write_bytes("db/x.dump", b"12345")
    info = store.stat("db/x.dump")
    assert info is not None and (info.key, info.size) == ("db/x.dump", 5)
    assert store.stat("db/none") is None

    store.delete("db/x.dump")
    store.delete("db/x.dump")  # missing is fine
    assert store.stat("db/x.dump") is None
    with pytest.raises(NotFound) as caught:
        store.open_read("db/x.dump")
    assert str(caught.value) == f"stored object 'db/x.dump' is missing from {store.url}"


@pytest.mark.parametrize("key", ["../x", "/abs", "a//b", "a/./b", "", "a\\b", "tab\tkey"])
def test_unsafe_keys_are_refused(store: S3Storage, key: str) -> None:
    for call in (
        store.open_write,
        store.open_read,
        store.stat,
        store.delete,
        store.discard_partial,
    ):
        with pytest.raises(StorageError, match="unsafe storage key"):
            call(key)


def test_reader_closes_early_and_reads_all(store: S3Storage) -> None:
    store.write_bytes("k", PATTERN)
    stream = store.open_read("k")
    assert stream.read(3) == PATTERN[:3]
    stream.close()
    assert stream.closed
    with store.open_read("k") as whole:
        assert whole.read() == PATTERN


def test_check_writable(store: S3Storage, s3_env: MotoServer, bucket: str) -> None:
    client = s3_env.client()
    stale = store.object_key(PROBE_NAME)  # as a process killed between put and delete left it
    client.put_object(Bucket=bucket, Key=stale, Body=b"ok")

    store.check_writable()

    assert client.list_objects_v2(Bucket=bucket).get("KeyCount") == 0  # no probe is left
    client.close()


def test_missing_bucket_is_one_clear_line(s3_env: MotoServer) -> None:
    store = make_store("s3://no-such-bucket/pgvault")
    expected = (
        "S3 bucket 'no-such-bucket' does not exist or is not accessible with the configured "
        "credentials"
    )
    with pytest.raises(StorageError) as caught:
        store.check_writable()
    assert str(caught.value) == expected
    for call in (lambda: store.open_read("k"), lambda: list(store.list())):
        with pytest.raises(StorageError) as caught:
            call()
        assert str(caught.value) == expected
    with pytest.raises(StorageError) as caught:
        store.write_bytes("k", b"x")
    assert str(caught.value) == expected


def test_refused_credentials(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # moto checks credentials and IAM policies after its first 4 requests, which set up a
    # bucket and a user who may do anything on S3 but PutObject.
    with MotoServer.start(tmp_path / "moto", env={"INITIAL_NO_AUTH_ACTION_COUNT": "4"}) as server:
        bucket = server.create_bucket()
        iam = boto3.client(
            "iam",
            endpoint_url=server.endpoint_url,
            aws_access_key_id="testing",
            aws_secret_access_key=SECRET_ACCESS_KEY,
            region_name="us-east-1",
        )
        iam.create_user(UserName="no-put")
        policy = {
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Action": "s3:*", "Resource": "*"},
                {"Effect": "Deny", "Action": "s3:PutObject", "Resource": "*"},
            ],
        }
        iam.put_user_policy(UserName="no-put", PolicyName="p", PolicyDocument=json.dumps(policy))
        key = iam.create_access_key(UserName="no-put")["AccessKey"]
        iam.close()
        for name, value in server.aws_env().items():
            monkeypatch.setenv(name, value)

        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "unknown-key")
        with pytest.raises(StorageError) as caught:
            make_store(f"s3://{bucket}/p").check_writable()
        assert str(caught.value) == (
            f"S3 bucket '{bucket}' does not exist or is not accessible with the configured "
            "credentials"
        )

        monkeypatch.setenv("AWS_ACCESS_KEY_ID", key["AccessKeyId"])
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", key["SecretAccessKey"])
        store = make_store(f"s3://{bucket}/p")
        with pytest.raises(StorageError) as caught:
            store.check_writable()
        assert str(caught.value) == (
            f"S3 bucket '{bucket}' does not allow writes under s3://{bucket}/p/ with the "
            "configured credentials (AccessDenied): grant s3:PutObject or choose another "
            "storage target"
        )
        with pytest.raises(StorageError) as caught:
            store.write_bytes("k", b"x")
        assert str(caught.value).startswith(f"S3 upload of s3://{bucket}/p/k was refused")
        assert key["SecretAccessKey"] not in str(caught.value)


def test_missing_credentials_are_one_line_without_secrets(
    s3_env: MotoServer, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    with pytest.raises(StorageError) as caught:
        make_store(f"s3://{bucket}/p").check_writable()
    message = str(caught.value)
    assert "\n" not in message
    assert "credentials" in message.lower() and "AWS_ACCESS_KEY_ID" in message


def test_explicit_settings_beat_the_environment(
    s3_env: MotoServer, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens there
    store = make_store(
        f"s3://{bucket}/p", endpoint_url=s3_env.endpoint_url, path_style=True, region="eu-west-3"
    )
    store.check_writable()
    assert store.client.meta.region_name == "eu-west-3"
    assert store.client.meta.config.retries["mode"] == "standard"
    retries = store.client.meta.config.retries  # botocore renames max_attempts
    assert retries.get("total_max_attempts", retries.get("max_attempts")) == S3Storage.MAX_ATTEMPTS


def test_factory_and_bad_settings(s3_env: MotoServer) -> None:
    opened = storage.open_storage(StorageTargetSettings(url="s3://b/some/prefix/"), "offsite")
    assert isinstance(opened, S3Storage)
    assert (opened.name, opened.bucket, opened.prefix) == ("offsite", "b", "some/prefix/")
    assert opened.object_key("x/y") == "some/prefix/x/y"
    assert make_store("s3://b").object_key("x") == "x"
    with pytest.raises(ConfigError, match="no valid bucket"):
        make_store("s3:///prefix")
    with pytest.raises(ConfigError, match="unsafe prefix"):
        make_store("s3://b/a/../c")
    with pytest.raises(ConfigError, match="unknown S3 sse"):
        make_store("s3://b", sse="rot13")
    with pytest.raises(ConfigError, match="needs sse"):
        make_store("s3://b", sse_kms_key_id="k")
    with pytest.raises(ConfigError, match="part size"):
        make_store("s3://b", part_size=MiB)


def test_part_size_grows_within_s3_limits() -> None:
    store = make_store("s3://b")
    sizes = [store.part_size_for(n) for n in range(1, S3Storage.MAX_PARTS + 1)]
    assert sizes[0] == sizes[999] == 8 * MiB
    assert sizes[1000] == 16 * MiB
    assert max(sizes) <= S3Storage.MAX_PART_SIZE
    assert sum(sizes) >= 5 * 1024**4  # 10,000 parts reach S3's 5 TiB object limit


def test_writing_200_mib_holds_about_two_parts(store: S3Storage, s3_env: MotoServer) -> None:
    big = make_store(store.url)  # default 8 MiB parts: one uploading, one filling
    assert big.part_size == 8 * MiB
    big.check_writable()  # the client and its connections exist before measuring
    total = 200 * MiB
    digest = hashlib.sha256()
    tracemalloc.start()
    try:
        writer = big.open_write("big.dump")
        for _ in range(total // MiB):
            writer.write(PATTERN)
            digest.update(PATTERN)
        info = writer.commit()
        _, write_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        with big.open_read("big.dump") as stream:
            read_back = sha256_of_stream(stream)
        _, read_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert info.size == total
    assert read_back == (digest.hexdigest(), total)
    assert write_peak < 24 * MiB, f"writing peaked at {write_peak / MiB:.1f} MiB"  # 2 parts
    assert read_peak < 16 * MiB, f"reading peaked at {read_peak / MiB:.1f} MiB"
    big.delete("big.dump")


@pytest.fixture
def private_server(tmp_path: Path) -> Iterator[MotoServer]:
    """A moto server of this test only (it gets stopped or frozen mid-upload)."""
    server = MotoServer.start(tmp_path / "moto")
    try:
        yield server
    finally:
        server.resume()
        server.stop()


@pytest.mark.parametrize("how", ["killed", "frozen"])
def test_server_lost_mid_upload_raises_storage_error_in_bounded_time(
    s3_env: MotoServer,
    private_server: MotoServer,
    how: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="pgvault")
    bucket = private_server.create_bucket()
    store = make_store(
        f"s3://{bucket}/pgvault",
        endpoint_url=private_server.endpoint_url,
        part_size=S3Storage.MIN_PART_SIZE,
        max_attempts=2,
        connect_timeout=1,
        read_timeout=2,
    )
    writer = store.open_write("db/x.dump")
    writer.write(PATTERN * 6)  # part 1 on its way
    private_server.wait_for_parts(bucket, "pgvault/db/x.dump", 1)  # stored, the upload open
    if how == "killed":
        private_server.stop()
    else:
        private_server.pause()

    started = time.monotonic()
    with pytest.raises(StorageError) as caught:
        for _ in range(10):
            writer.write(PATTERN)
    elapsed = time.monotonic() - started
    with pytest.raises(StorageError, match="earlier request"):
        writer.commit()
    writer.abort()  # never raises, even with the server gone
    assert time.monotonic() - started < 30

    message = str(caught.value)
    assert elapsed < 15, f"took {elapsed:.1f} s: {message}"
    assert message.startswith(f"S3 upload of part 2 of s3://{bucket}/pgvault/db/x.dump failed")
    assert "\n" not in message and "uploadId" not in message
    assert SECRET_ACCESS_KEY not in message and SECRET_ACCESS_KEY not in caplog.text


def test_backup_and_restore_through_s3(
    s3_env: MotoServer,
    pg18: PgCluster,
    fresh_pagila: FreshPagila,
    janitor: Janitor,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bucket = s3_env.create_bucket()
    url = f"s3://{bucket}/pgvault"
    monkeypatch.chdir(tmp_path)  # no stray ./pgvault.toml
    monkeypatch.delenv("PGVAULT_CONFIG", raising=False)
    monkeypatch.setenv("PGPASSWORD", pg18.password)
    settings = load_settings(home=tmp_path / "home", default_storage=url)
    catalog = Catalog.open(settings.catalog_location)
    rebuilt = Catalog.open(f"sqlite:///{tmp_path / 'rebuilt.sqlite3'}")
    try:
        source = fresh_pagila(pg18)
        rec = backups.create(
            settings,
            catalog,
            backups.BackupRequest(target=databases.from_url(settings, pg18.url(source))),
        )
        assert rec.status == "completed" and rec.storage == url
        stored = {info.key: info.size for info in storage.resolve(settings, url).list()}
        assert stored[rec.storage_key] == rec.size_bytes
        assert rec.manifest_key in stored

        restored = janitor.new(pg18, "s3restore")
        restores.restore(
            settings,
            catalog,
            restores.RestoreRequest(
                target=databases.from_url(settings, pg18.url(restored)),
                backup_id=rec.id,
                confirm=restored,
            ),
        )
        assert_same_database(
            database_fingerprint(pg18, source), database_fingerprint(pg18, restored)
        )

        rows = backups.rebuild_catalog(rebuilt, storage.resolve(settings, url))
        completed = catalog.list_backups(status="completed")
        assert [r.model_dump() for r in rows] == [r.model_dump() for r in completed]
        assert [r.model_dump() for r in rebuilt.list_backups()] == [
            r.model_dump() for r in completed
        ]
    finally:
        catalog.engine.dispose()
        rebuilt.engine.dispose()


def test_aws_max_attempts_is_honoured(monkeypatch: pytest.MonkeyPatch, s3_env: MotoServer) -> None:
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "3")
    retries = make_store("s3://b").client.meta.config.retries
    assert retries.get("total_max_attempts", retries.get("max_attempts")) == 3
    retries = make_store("s3://b", max_attempts=2).client.meta.config.retries
    assert retries.get("total_max_attempts", retries.get("max_attempts")) == 2
