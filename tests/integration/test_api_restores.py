"""Restores through the service, against real PostgreSQL 18: the safe swap restore as a job,
the restore policies (confirmation, passkey, recent backup, environment, busy), a cancelled
restore that changes nothing, and uploads (Pagila restored; a 200 MB random file refused
with 400 before anything is touched, memory flat; over the limit 413)."""

from __future__ import annotations

import gzip
import os
from pathlib import Path
from typing import Any

import pytest

from pgvault import databases, passwords
from pgvault.catalog import locks
from support.apiserver import ApiServer, assert_error, database_entry, peak_memory
from support.pgcluster import FreshPagila, PgCluster
from support.vault import Janitor, user_table_counts

PASSKEY = "open sesame 42"


@pytest.fixture(scope="module")
def passkey_hash() -> str:
    """argon2 hash of :data:`PASSKEY` (as ``pgvault passkey-hash`` prints it)."""
    return passwords.hash_secret(PASSKEY)


def _start(tmp_path: Path, **overrides: Any) -> ApiServer:
    return ApiServer.start(tmp_path / "home", **overrides)


def _backup(server: ApiServer, database: str) -> dict[str, Any]:
    with server.client(server.token("operator")) as client:
        answer = client.post("/backups", params={"wait": "true"}, json={"database": database})
    assert answer.status_code == 200, answer.text
    backup: dict[str, Any] = answer.json()["backup"]
    return backup


def test_restore_job_swaps_the_backup_in_with_a_safety_backup(
    tmp_path: Path, pg18: PgCluster, fresh_pagila: FreshPagila, janitor: Janitor
) -> None:
    live = janitor.track(pg18, fresh_pagila())
    before = user_table_counts(pg18, live)
    server = _start(tmp_path, databases={"app": database_entry(pg18, live)})
    try:
        backup = _backup(server, "app")
        pg18.psql("CREATE TABLE junk AS SELECT 1 AS x; DELETE FROM payment", dbname=live)
        with server.client(server.token("admin")) as admin:
            started = admin.post(f"/backups/{backup['id']}/restore", json={"confirm": "app"})
            assert started.status_code == 202, started.text
            job = server.wait_job(started.json()["id"], server.token("admin"))
            assert job["status"] == "completed", job
            restore = job["result"]["restore"]
            assert restore["safety_backup_id"] and restore["previous_database"]
            kinds = [b["trigger"] for b in admin.get("/backups").json()["items"]]
            events = admin.get("/audit", params={"action": "restore"}).json()
        assert user_table_counts(pg18, live) == before
        assert sorted(kinds) == ["manual", "pre-restore"]
        assert events[0]["actor"] == "token:test-admin" and events[0]["result"] == "ok"
        assert events[0]["target"] == f"backup_id={backup['id']}"
    finally:
        server.stop()


def test_restore_policies_refuse_before_anything_is_touched(
    tmp_path: Path,
    pg18: PgCluster,
    fresh_pagila: FreshPagila,
    janitor: Janitor,
    passkey_hash: str,
) -> None:
    live = janitor.track(pg18, fresh_pagila())
    other = fresh_pagila()
    server = _start(
        tmp_path,
        environment="staging",
        databases={
            "app": database_entry(
                pg18,
                live,
                environment="staging",
                restore_passkey_hash=passkey_hash,
                require_recent_backup_minutes=60,
            ),
            "other": database_entry(pg18, other, environment="staging"),
            "prod": database_entry(pg18, other, environment="production"),
        },
    )
    try:
        backup = _backup(server, "other")
        url = f"/backups/{backup['id']}/restore"
        with server.client(server.token("admin")) as admin:
            good = {"target": "app", "confirm": "app", "passkey": PASSKEY}
            assert_error(admin.post(url, json={**good, "confirm": "ap"}), 403, "confirmation")
            assert_error(
                admin.post(url, json={**good, "passkey": "guess"}), 403, "Invalid restore passkey"
            )
            assert_error(
                admin.post(url, json={**good, "passkey": None}), 403, "Invalid restore passkey"
            )
            assert_error(
                admin.post(url, json={**good, "safety_backup": False}), 403, "no completed backup"
            )
            assert_error(
                admin.post(url, json={"target": "prod", "confirm": "prod"}),
                403,
                "belongs to environment 'production'",
            )
            conn = databases.from_config(server.settings, "app").conn
            lock = f"backup:{conn.server_key()}/{conn.dbname}"
            with locks.exclusive(server.settings, server.catalog, lock):
                assert_error(admin.post(url, json=good), 409, "already running")
            assert not [db for db in pg18.databases() if db.startswith(f"{live}_")]

            started = admin.post(url, json=good)
            assert started.status_code == 202, started.text
            admin.post(f"/jobs/{started.json()['id']}/cancel")
            job = server.wait_job(started.json()["id"], server.token("admin"))
        assert job["status"] == "cancelled" and "nothing changed" in job["error"]
        assert user_table_counts(pg18, live) == user_table_counts(pg18, other)  # both pagila
        assert not [db for db in pg18.databases() if "_pgvault_scratch_" in db]
        assert not [db for db in pg18.databases() if db.startswith(f"{live}_pre_restore_")]
    finally:
        server.stop()


def test_upload_restore_of_a_gzipped_plain_pagila_dump(
    tmp_path: Path, pg18: PgCluster, fresh_pagila: FreshPagila, janitor: Janitor
) -> None:
    source = fresh_pagila()
    dump = tmp_path / "pagila.sql.gz"
    plain = pg18.client("pg_dump", "--no-owner", "-d", source)  # an application team's dump
    dump.write_bytes(gzip.compress(plain.encode(), 1))
    target, owner = janitor.owned(pg18, "upl")  # uploads run as the database's owner
    server = _start(tmp_path, databases={"copy": database_entry(pg18, target)})
    try:
        with server.client(server.token("admin")) as admin, open(dump, "rb") as handle:
            answer = admin.post(
                "/databases/copy/restore-upload",
                files={"file": ("pagila.sql.gz", handle, "application/gzip")},
                data={"confirm": "copy"},
            )
            assert answer.status_code == 202, answer.text
            job = server.wait_job(answer.json()["id"], server.token("admin"))
            assert job["status"] == "completed", job
            [stored] = admin.get("/backups", params={"trigger": "upload"}).json()["items"]
        assert stored["format"] == "plain" and stored["compression"] == "gzip"
        assert stored["labels"] == {"uploaded_as": "pagila.sql.gz"}
        assert user_table_counts(pg18, target) == user_table_counts(pg18, source)
        owners = pg18.psql(
            "SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname = 'public'", dbname=target
        )
        assert owners == owner  # created by the owner, not by a superuser
    finally:
        server.stop()


def test_upload_of_a_200_mb_random_file_is_400_and_touches_nothing(
    tmp_path: Path, pg18: PgCluster, fresh_pagila: FreshPagila, janitor: Janitor
) -> None:
    live = janitor.track(pg18, fresh_pagila())
    before_counts = user_table_counts(pg18, live)
    before_dbs = pg18.databases()
    junk = tmp_path / "junk.dump"
    with open(junk, "wb") as out:
        for _ in range(200):
            out.write(os.urandom(1024 * 1024))
    server = _start(tmp_path, databases={"app": database_entry(pg18, live)})
    try:
        with server.client(server.token("admin")) as admin, open(junk, "rb") as handle:
            with peak_memory() as memory:
                answer = admin.post(
                    "/databases/app/restore-upload",
                    files={"file": ("junk.dump", handle)},
                    data={"confirm": "app"},
                )
            assert_error(answer, 400, "not a PostgreSQL dump")
            assert admin.get("/jobs").json() == []
        grown = memory["peak"] - memory["base"]
        assert grown < 100_000_000, f"memory grew by {grown} bytes during a 200 MB upload"
        assert pg18.databases() == before_dbs
        assert user_table_counts(pg18, live) == before_counts
        assert not [
            p for p in Path(server.settings.default_storage_location).rglob("*") if p.is_file()
        ]
    finally:
        server.stop()


def test_upload_over_the_limit_is_413(
    tmp_path: Path, pg18: PgCluster, fresh_pagila: FreshPagila
) -> None:
    server = _start(
        tmp_path,
        databases={"app": database_entry(pg18, fresh_pagila())},
        api={"max_upload_bytes": 1_000_000},
    )
    body = b"-- PostgreSQL database dump\n" + b"-- padding\n" * 200_000
    try:
        with server.client(server.token("admin")) as admin:
            answer = admin.post(
                "/databases/app/restore-upload",
                files={"file": ("big.sql", body)},
                data={"confirm": "app"},
            )
        assert_error(answer, 413, "limit")
    finally:
        server.stop()


def test_restore_preview_renders_the_domain_plan_and_changes_nothing(
    tmp_path: Path, pg18: PgCluster, fresh_pagila: FreshPagila, janitor: Janitor
) -> None:
    live = janitor.track(pg18, fresh_pagila())
    before = user_table_counts(pg18, live)
    server = _start(
        tmp_path,
        databases={
            "app": database_entry(
                pg18,
                live,
                name_template="{app}/{started:%Y-%m-%d-%H%M}-{tz}{ext}",
                timezone="Asia/Kolkata",
            )
        },
    )
    try:
        backup = _backup(server, "app")
        pg18.psql("DELETE FROM payment_p2022_01", dbname=live)
        with server.client(server.token("admin")) as admin:
            answer = admin.post(f"/backups/{backup['id']}/restore-preview", json={})
        assert answer.status_code == 200, answer.text
        preview = answer.json()
        rows = {t["table"]: (t["recorded"], t["current"]) for t in preview["tables"]}
        assert rows["public.payment_p2022_01"] == (before["public.payment_p2022_01"], 0)
        assert rows["public.rental"] == (before["public.rental"], before["public.rental"])
        assert preview["objects"]["TABLE DATA"] == len(before)
        assert preview["target_exists"] and preview["safety_backup"] and preview["mode"] == "swap"
        assert any(g.startswith("confirmation") for g in preview["guards"])
        assert backup["storage_key"].startswith("app/") and backup["storage_key"].endswith(
            ("IST.dump", "IST.tar")
        )
        assert not [db for db in pg18.databases() if db.startswith(f"{live}_")]
    finally:
        server.stop()
