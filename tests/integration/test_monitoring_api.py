"""The operations router over HTTP (the real app on uvicorn, a free port): schedules,
retention apply (dry run first), history by day, backup health and ``/metrics``, with the
role checks of the service."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn

from pgvault import backups, databases
from pgvault.api import create_app
from pgvault.api.routes import operations
from pgvault.catalog import Catalog
from pgvault.config.settings import load_settings
from support.apiserver import ApiServer
from support.pgcluster import FreshPagila, PgCluster

SECRET = "test-secret-" + "y" * 40


@pytest.fixture
def server(pg18: PgCluster, fresh_pagila: FreshPagila, tmp_path: Path) -> Iterator[ApiServer]:
    """The service with the operations routers mounted (if the app does not yet), on a
    free port, with three completed backups of a pagila copy."""
    settings = load_settings(
        home=tmp_path / "home",
        databases={
            "app": {
                "url": pg18.url(fresh_pagila(), with_password=True),
                "schedules": {"nightly": {"cron": "0 2 * * *", "timezone": "Asia/Kolkata"}},
                "retention": {"minimum_redundancy": 2},
            }
        },
    )
    catalog = Catalog.open(settings.catalog_location)
    app = create_app(settings, catalog=catalog, secret=SECRET)
    if not any(getattr(r, "path", "") == "/metrics" for r in app.routes):
        app.include_router(operations.router, prefix="/api/v1")
        app.include_router(operations.metrics_router)
    target = databases.from_config(settings, "app")
    for _ in range(3):
        backups.create(settings, catalog, backups.BackupRequest(target))
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(app, log_level="warning", ws="none", http="h11", access_log=False)
    uv = uvicorn.Server(config)
    thread = threading.Thread(target=uv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not uv.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.02)
    running = ApiServer(
        f"http://127.0.0.1:{sock.getsockname()[1]}", settings, catalog, uv, thread, sock
    )
    yield running
    running.stop()


def test_operations_endpoints(server: ApiServer) -> None:
    viewer = {"Authorization": f"Bearer {server.token('viewer')}"}
    admin = {"Authorization": f"Bearer {server.token('admin')}"}
    client = httpx.Client(base_url=server.url, timeout=60)

    assert client.get("/metrics").status_code == 401
    metrics = client.get("/metrics", headers=viewer)
    assert metrics.status_code == 200
    assert metrics.headers["content-type"].startswith("text/plain")
    assert 'pgvault_backups_total{database="app",status="completed"} 3.0' in metrics.text
    assert 'pgvault_health_status{database="app"} 0.0' in metrics.text

    [nightly] = client.get("/api/v1/schedules", headers=viewer).json()[:1]
    assert (nightly["kind"], nightly["name"], nightly["timezone"]) == (
        "backup",
        "nightly",
        "Asia/Kolkata",
    )
    assert all(t.endswith(("20:30:00Z", "20:30:00+00:00")) for t in nightly["next_runs"])

    [day] = client.get("/api/v1/history?group_by=day", headers=viewer).json()
    assert (day["database"], day["completed"]) == ("app", 3)

    health = client.get("/api/v1/health/backups", headers=viewer).json()
    assert health["status"] == "ok" and health["databases"][0]["database"] == "app"

    assert client.post("/api/v1/retention/apply?keep_last=1", headers=viewer).status_code == 403
    dry = client.post("/api/v1/retention/apply?keep_last=1", headers=admin).json()
    assert [i["keep"] for i in dry] == [True, True, False]
    assert [i["protected"] for i in dry] == [True, True, False]  # minimum_redundancy 2
    assert not any(i["deleted"] for i in dry) and not any(i["held"] for i in dry)
    assert dry[1]["reasons"] == ["minimum_redundancy 2"]
    assert dry[2]["reasons"] == ["no rule keeps it (keep_last 1)"]
    assert [c["keep"] for c in dry[2]["copies"]] == [False]  # its one copy goes
    done = client.post("/api/v1/retention/apply?keep_last=1&dry_run=false", headers=admin).json()
    assert [i["deleted"] for i in done] == [False, False, True]
    [day] = client.get("/api/v1/history", headers=viewer).json()
    assert (day["completed"], day["deleted"]) == (2, 1)
    refused = client.delete(f"/api/v1/backups/{done[1]['backup_id']}", headers=admin)
    assert refused.status_code == 403, refused.text
    assert "minimum_redundancy 2" in refused.json()["detail"]
    client.close()
