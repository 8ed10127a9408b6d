"""Point-in-time recovery over HTTP (the real app on uvicorn): the WAL archive's state and
the recoverable window for viewers, base backups and restore points for operators, and one
database restored to a time into a configured database for admins."""

from __future__ import annotations

from support.apiserver import ApiServer, assert_error
from support.fingerprint import assert_same_database, database_fingerprint
from support.pgcluster import FreshPagila, PgCluster
from support.pitr import allow_marks, pitr_env, server_now, server_settings
from support.vault import Janitor


def test_pitr_over_http(pitr18: PgCluster, fresh_pagila: FreshPagila, janitor: Janitor) -> None:
    dbname = fresh_pagila(pitr18)
    allow_marks(pitr18, dbname)
    with pitr_env(pitr18, dbname) as env:
        env.start_stream()
        copy = janitor.new(pitr18, "copy")
        configured = {
            env.name: env.settings.databases[env.name].model_dump(exclude_defaults=True),
            "copy": {"url": pitr18.url(copy, with_password=True)},
        }
        api = ApiServer.start(env.home, databases=configured, **server_settings())
        try:
            viewer, operator, admin = (api.token(r) for r in ("viewer", "operator", "admin"))
            with api.client(viewer) as client:
                empty = client.get(f"/databases/{env.name}/recoverable-window").json()
                assert (empty["start"], empty["end"], empty["base_backups"]) == (None, None, 0)
                assert_error(client.post(f"/databases/{env.name}/physical-backups", json={}), 403)
                assert_error(client.get("/databases/copy/wal"), 400, "pitr = true")
            with api.client(operator) as client:
                started = client.post(f"/databases/{env.name}/physical-backups", json={})
                assert started.status_code == 202, started.text
                job = api.wait_job(started.json()["id"], operator)
                assert job["status"] == "completed", job
                backup = job["result"]["physical_backup"]
                marked = client.post(f"/databases/{env.name}/restore-points", json={"name": "m1"})
                assert marked.status_code == 201 and marked.json()["name"] == "m1"
            env.sql("UPDATE customer SET email = upper(email) WHERE customer_id < 20")
            at_t = database_fingerprint(pitr18, dbname)
            target_time = server_now(pitr18).isoformat()
            env.sql("UPDATE film SET description = NULL")  # the accident
            env.switch_and_wait()
            with api.client(viewer) as client:
                window = client.get(f"/databases/{env.name}/recoverable-window").json()
                assert window["base_backups"] == 1 and window["start"] <= target_time
                assert window["end"] >= backup["finished_at"] and window["gaps"] == []
                wal = client.get(f"/databases/{env.name}/wal", params={"live": True}).json()
                assert wal["streaming"] is True and wal["archived_segments"] >= 2
                listed = client.get("/physical-backups", params={"database": env.name}).json()
                assert [b["id"] for b in listed] == [backup["id"]]
            body = {"target": "copy", "target_time": target_time, "confirm": "nope"}
            with api.client(admin) as client:
                assert_error(client.post(f"/databases/{env.name}/pitr-restore", json=body), 403)
                body["confirm"] = "copy"
                started = client.post(f"/databases/{env.name}/pitr-restore", json=body)
                assert started.status_code == 202, started.text
            job = api.wait_job(started.json()["id"], admin, timeout=300)
            assert job["status"] == "completed", job
            assert job["result"]["reached_time"] <= target_time
            assert_same_database(database_fingerprint(pitr18, copy), at_t)
        finally:
            api.stop()
