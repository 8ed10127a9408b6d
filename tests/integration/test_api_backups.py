"""Backups through the service, against real PostgreSQL 18 and a real uvicorn: start and
wait, jobs with progress and server-sent events, idempotency keys, 409 while busy, cancel,
list/show/delete, streamed downloads (memory stays flat) and signed links, the audit log."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from pgvault import databases
from pgvault.catalog import locks
from support.apiserver import ApiServer, assert_error, database_entry, peak_memory
from support.pgcluster import FreshPagila, PgCluster

BIG_ROWS = 1_200_000  # ~200 MB uncompressed dump


@pytest.fixture
def served(tmp_path: Path, pg18: PgCluster, fresh_pagila: FreshPagila) -> Iterator[ApiServer]:
    """A service whose database ``app`` is a fresh pagila copy (``minimum_redundancy`` 1)."""
    entry = {**database_entry(pg18, fresh_pagila()), "retention": {"minimum_redundancy": 1}}
    server = ApiServer.start(tmp_path / "home", databases={"app": entry})
    yield server
    server.stop()


@pytest.fixture(scope="module")
def big_database(pg18: PgCluster) -> Iterator[str]:
    """A database whose plain-format dump is ~200 MB (one table of md5 text)."""
    name = "api_big"
    pg18.drop_database(name)
    pg18.create_database(name)
    pg18.psql(
        "CREATE TABLE padding AS SELECT g AS id, repeat(md5(g::text), 5) AS pad "
        f"FROM generate_series(1, {BIG_ROWS}) g",
        dbname=name,
    )
    yield name
    pg18.drop_database(name)


def test_backup_with_wait_then_list_show_download_delete(served: ApiServer) -> None:
    with served.client(served.token("operator")) as operator:
        done = operator.post(
            "/backups", params={"wait": "true"}, json={"database": "app", "compression": "gzip"}
        )
        assert done.status_code == 200, done.text
        backup = done.json()["backup"]
        assert backup["status"] == "completed" and backup["size_bytes"] > 100_000
        assert backup["file_name"].endswith(".dump") and len(backup["sha256"]) == 64
        assert backup["finished_at"] and backup["duration_seconds"] > 0
        assert backup["created_by"] == "token:test-operator"

        listed = operator.get("/backups", params={"database": "app", "group_by": "day"}).json()
        assert [b["id"] for b in listed["items"]] == [backup["id"]]
        assert listed["days"][0]["count"] == 1 and listed["days"][0]["completed"] == 1
        assert operator.get("/backups", params={"trigger": "upload"}).json()["items"] == []
        assert operator.get(f"/backups/{backup['id']}").json()["sha256"] == backup["sha256"]

        with operator.stream("GET", f"/backups/{backup['id']}/download") as answer:
            assert answer.headers["content-length"] == str(backup["size_bytes"])
            assert answer.headers["content-disposition"].startswith("attachment;")
            digest = hashlib.sha256(b"".join(answer.iter_bytes())).hexdigest()
        assert digest == backup["sha256"]

        link = operator.post(f"/backups/{backup['id']}/download-link").json()
        with served.client() as browser:
            fetched = browser.get(link["url"].removeprefix("/api/v1"))
            assert hashlib.sha256(fetched.content).hexdigest() == backup["sha256"]
            assert_error(browser.get(link["url"].removeprefix("/api/v1")[:-3] + "abc"), 401)

        [stats] = operator.get("/stats").json()
        assert stats["database"] == "app" and stats["count"] == 1
        [db] = operator.get("/databases").json()
        assert db["newest_backup"]["id"] == backup["id"] and db["newest_age_seconds"] >= 0
        assert operator.get("/health").json()["databases"][0]["name"] == "app"
        assert_error(operator.delete(f"/backups/{backup['id']}"), 403, "admin")
        newer = operator.post("/backups", params={"wait": "true"}, json={"database": "app"})
        assert newer.status_code == 200, newer.text
    with served.client(served.token("admin")) as admin:
        newest = newer.json()["backup"]["id"]
        assert_error(admin.delete(f"/backups/{newest}"), 403, "minimum_redundancy 1")
        assert admin.delete(f"/backups/{backup['id']}").json()["status"] == "deleted"
        assert_error(admin.get(f"/backups/{backup['id']}/download"), 404, "deleted")
        events = admin.get("/audit", params={"result": "ok"}).json()
    seen = {(e["actor"], e["action"]) for e in events}
    assert ("token:test-operator", "POST /api/v1/backups") in seen
    assert ("token:test-admin", "DELETE /api/v1/backups/{backup_id}") in seen
    assert ("download-link:token:test-operator", "GET /api/v1/downloads/{token}") in seen


def test_backup_job_reports_progress_and_an_idempotency_key_reuses_it(served: ApiServer) -> None:
    token = served.token("operator")
    with served.client(token) as client:
        headers = {"Idempotency-Key": "nightly-42"}
        first = client.post("/backups", json={"database": "app"}, headers=headers)
        assert first.status_code == 202
        job = first.json()
        assert first.headers["location"] == f"/api/v1/jobs/{job['id']}"
        again = client.post("/backups", json={"database": "app"}, headers=headers)
        assert again.status_code == 202 and again.json()["id"] == job["id"]
        events = []
        with client.stream("GET", f"/jobs/{job['id']}/events") as stream:
            assert stream.headers["content-type"].startswith("text/event-stream")
            for line in stream.iter_lines():
                if line.startswith("event: "):
                    events.append(line.removeprefix("event: "))
                if line.startswith("data: ") and events[-1] == "end":
                    last = json.loads(line.removeprefix("data: "))
                    break
        assert last["status"] == "completed" and last["bytes_done"] > 0 and last["backup_id"]
        assert events[-1] == "end"
        assert [j["id"] for j in client.get("/jobs").json()] == [job["id"]]
        assert len(client.get("/backups").json()["items"]) == 1


def test_a_backup_of_a_busy_database_is_409(served: ApiServer) -> None:
    conn = databases.from_config(served.settings, "app").conn
    with locks.exclusive(
        served.settings, served.catalog, f"backup:{conn.server_key()}/{conn.dbname}"
    ) as got:
        assert got
        with served.client(served.token("operator")) as client:
            answer = client.post("/backups", json={"database": "app"})
    assert_error(answer, 409, "already running")


def test_cancel_stops_a_running_backup_and_a_large_download_streams(
    tmp_path: Path, pg18: PgCluster, big_database: str
) -> None:
    server = ApiServer.start(
        tmp_path / "home", databases={"big": database_entry(pg18, big_database)}
    )
    try:
        with server.client(server.token("operator")) as client:
            body = {"database": "big", "format": "plain", "compression": "none"}
            job = client.post("/backups", json=body).json()
            while (now := client.get(f"/jobs/{job['id']}").json())["bytes_done"] < 20_000_000:
                assert now["status"] == "running", now
            assert client.post(f"/jobs/{job['id']}/cancel").json()["id"] == job["id"]
            ended = server.wait_job(job["id"], server.token("operator"))
            assert ended["status"] == "cancelled", ended
            [row] = client.get("/backups", params={"status": "interrupted"}).json()["items"]
            assert not list(Path(server.settings.default_storage_location).rglob("*.sql*"))

            done = client.post("/backups", params={"wait": "true"}, json=body).json()["backup"]
            assert done["size_bytes"] > 150_000_000
            digest = hashlib.sha256()
            with (
                peak_memory() as memory,
                client.stream("GET", f"/backups/{done['id']}/download") as answer,
            ):
                for chunk in answer.iter_bytes():
                    digest.update(chunk)
            assert digest.hexdigest() == done["sha256"]
            grown = memory["peak"] - memory["base"]
            assert grown < 80_000_000, f"memory grew by {grown} bytes during a download"
    finally:
        server.stop()
