"""Streams that really stream: the live dump endpoint and uploads, through a real service.

* ``GET /databases/{name}/dump`` sends pg_dump's bytes while pg_dump still runs (the job is
  held by the client's pace: a bounded hand-over), and with ``keep=true`` records exactly
  the bytes sent as a backup, without reading them back; a client that leaves mid-way
  leaves no backup and no stored object.
* ``POST /backups/upload`` of a 1 GiB dump streams into storage: no spooled temporary file,
  the process's memory flat.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from support.apiserver import ApiServer, database_entry, peak_memory
from support.pgcluster import FreshPagila, PgCluster

BIG_ROWS = 600_000  # ~45 MB of hex text: far more than the hand-over holds


@pytest.fixture
def big_db(pg18: PgCluster, fresh_pagila: FreshPagila) -> str:
    name = fresh_pagila()
    pg18.psql(
        "CREATE TABLE big AS SELECT g AS id, md5(g::text) || md5((g * 7)::text) AS body "
        f"FROM generate_series(1, {BIG_ROWS}) g",
        dbname=name,
    )
    return name


def _job(server: ApiServer, job_id: str) -> dict[str, object]:
    with server.client(server.token("operator")) as client:
        found: dict[str, object] = client.get(f"/jobs/{job_id}").json()
    return found


def _first_chunk_then_rest(response: httpx.Response) -> tuple[bytes, Iterator[bytes]]:
    chunks = response.iter_bytes()
    return next(chunks), chunks


def test_live_dump_streams_while_pg_dump_runs_and_keeps_what_it_sent(
    tmp_path: Path, pg18: PgCluster, big_db: str
) -> None:
    server = ApiServer.start(tmp_path / "home", databases={"app": database_entry(pg18, big_db)})
    try:
        with (
            server.client(server.token("operator")) as client,
            client.stream("GET", "/databases/app/dump", params={"keep": "true"}) as response,
        ):
            assert response.status_code == 200
            job_id = response.headers["X-Pgvault-Job"]
            backup_id = response.headers["X-Pgvault-Backup-Id"]
            first, rest = _first_chunk_then_rest(response)
            # the client has read one chunk: pg_dump is held, the job is still running
            time.sleep(0.5)
            assert _job(server, job_id)["status"] == "running"
            digest, size = hashlib.sha256(first), len(first)
            for chunk in rest:
                digest.update(chunk)
                size += len(chunk)
        assert first.startswith(b"PGDMP")
        deadline = time.monotonic() + 60
        while _job(server, job_id)["status"] == "running" and time.monotonic() < deadline:
            time.sleep(0.1)
        with server.client(server.token("operator")) as client:
            backup = client.get(f"/backups/{backup_id}").json()
        assert backup["status"] == "completed"
        assert (backup["size_bytes"], backup["sha256"]) == (size, digest.hexdigest())
        assert backup["row_counts"]["public.big"] == BIG_ROWS
        assert size > 10 * 2**20
    finally:
        server.stop()


def test_a_client_leaving_a_kept_live_dump_leaves_no_backup(
    tmp_path: Path, pg18: PgCluster, big_db: str
) -> None:
    server = ApiServer.start(tmp_path / "home", databases={"app": database_entry(pg18, big_db)})
    try:
        with server.client(server.token("operator")) as client:
            with client.stream("GET", "/databases/app/dump", params={"keep": "true"}) as resp:
                job_id = resp.headers["X-Pgvault-Job"]
                backup_id = resp.headers["X-Pgvault-Backup-Id"]
                _first_chunk_then_rest(resp)
            deadline = time.monotonic() + 60
            while _job(server, job_id)["status"] == "running" and time.monotonic() < deadline:
                time.sleep(0.1)
            assert _job(server, job_id)["status"] == "failed"
            backup = client.get(f"/backups/{backup_id}").json()
        assert backup["status"] in ("failed", "interrupted")
        stored = Path(server.settings.default_storage_location)
        assert not [p for p in stored.rglob("*") if p.is_file()]
    finally:
        server.stop()


def test_live_dump_without_keep_records_nothing(
    tmp_path: Path, pg18: PgCluster, fresh_pagila: FreshPagila
) -> None:
    server = ApiServer.start(
        tmp_path / "home", databases={"app": database_entry(pg18, fresh_pagila())}
    )
    try:
        with server.client(server.token("operator")) as client:
            answer = client.get("/databases/app/dump")
            assert answer.status_code == 200
            assert answer.content.startswith(b"PGDMP")
            assert "X-Pgvault-Backup-Id" not in answer.headers
            assert client.get("/backups").json()["items"] == []
        dumped = tmp_path / "live.dump"
        dumped.write_bytes(answer.content)
        listing = pg18.client("pg_restore", "--list", str(dumped))
        assert "TABLE DATA public actor" in listing
    finally:
        server.stop()


class PlainDump:
    """A file-like plain SQL dump of ``size`` bytes made on the fly (comment lines between
    pg_dump's header and trailer), so a 1 GiB upload needs no file on disk."""

    LINE = b"-- " + b"x" * 4092 + b"\n"  # 4 KiB lines, as long as a wide table's rows
    HEAD = b"--\n-- PostgreSQL database dump\n--\n\nSET statement_timeout = 0;\n"
    TAIL = b"\n--\n-- PostgreSQL database dump complete\n--\n"

    def __init__(self, size: int) -> None:
        self.size = size
        self.sent = 0

    def read(self, n: int = -1) -> bytes:
        if self.sent >= self.size:
            return b""
        if self.sent == 0:
            self.sent = len(self.HEAD)
            return self.HEAD
        left = self.size - self.sent - len(self.TAIL)
        if left <= 0:
            self.sent = self.size
            return self.TAIL
        want = min(left, n if n > 0 else 2**20)
        block = (self.LINE * (want // len(self.LINE) + 1))[:want]
        self.sent += len(block)
        return block


def test_a_1_gib_upload_streams_into_storage_with_flat_memory_and_no_spool(
    tmp_path: Path, pg18: PgCluster, fresh_pagila: FreshPagila, monkeypatch: pytest.MonkeyPatch
) -> None:
    spool = tmp_path / "tmp"
    spool.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(spool))  # where a spooled file would go
    server = ApiServer.start(
        tmp_path / "home", databases={"app": database_entry(pg18, fresh_pagila())}
    )
    largest = {"bytes": 0}
    stop = threading.Event()

    def watch_spool() -> None:
        while not stop.is_set():
            for path in spool.rglob("*"):
                try:
                    largest["bytes"] = max(largest["bytes"], path.stat().st_size)
                except OSError:
                    pass
            stop.wait(0.05)

    watcher = threading.Thread(target=watch_spool, daemon=True)
    watcher.start()
    size = 2**30
    try:
        with server.client(server.token("admin")) as admin, peak_memory() as memory:
            answer = admin.post(
                "/backups/upload",
                params={"database": "app"},
                files={"file": ("huge.sql", PlainDump(size), "application/sql")},
            )
        assert answer.status_code == 201, answer.text
        backup = answer.json()
        assert (backup["trigger"], backup["format"], backup["size_bytes"]) == (
            "upload",
            "plain",
            size,
        )
        grown = memory["peak"] - memory["base"]
        assert grown < 64 * 2**20, f"memory grew by {grown} bytes during a 1 GiB upload"
        assert largest["bytes"] < 2**20, f"a {largest['bytes']} byte temporary file appeared"
        stored = Path(server.settings.default_storage_location) / backup["storage_key"]
        assert os.path.getsize(stored) == size
    finally:
        stop.set()
        watcher.join()
        server.stop()
