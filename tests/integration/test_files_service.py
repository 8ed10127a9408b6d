"""File snapshots in the service and unattended operation: the ``/api/v1/files`` routes
(roles, jobs, guards on restores), health and metrics, schedules and the scheduler's slot
rule, and the ``files_snapshot_failed`` notification."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from pgvault.catalog import Catalog
from pgvault.catalog import files as rows
from pgvault.config.settings import load_settings
from pgvault.operations import monitoring, schedules
from pgvault.operations.scheduler import Scheduler, slot_text
from pgvault.operations.schedules import latest_fire_time
from support.apiserver import ApiServer, assert_error
from support.filesets import make_tree, tree
from support.receivers import webhook


@pytest.fixture
def api(tmp_path: Path) -> Iterator[ApiServer]:
    src = tmp_path / "uploads"
    make_tree(src, 12, 2048)
    server = ApiServer.start(
        tmp_path / "home",
        files={"up": {"source": str(src)}, "gone": {"source": str(tmp_path / "missing")}},
    )
    yield server
    server.stop()


def test_file_snapshots_over_http(api: ApiServer, tmp_path: Path) -> None:
    viewer, operator, admin = api.token("viewer"), api.token("operator"), api.token("admin")
    with api.client(viewer) as client:
        assert_error(client.post("/files/sets/up/snapshots"), 403, "operator")
        sets = {s["name"]: s for s in client.get("/files/sets").json()}
        assert (
            sets["up"]["status"] == "critical" and "no completed snapshot" in sets["up"]["reasons"]
        )
    with api.client(operator) as client:
        assert_error(client.post("/files/sets/nope/snapshots"), 400, "no file set")
        answer = client.post("/files/sets/up/snapshots", params={"wait": "true"})
        assert answer.status_code == 200, answer.text
        snap = answer.json()["snapshot"]
        assert snap["objects"] == 12 and snap["status"] == "completed"
        failed = client.post("/files/sets/gone/snapshots").json()
        assert api.wait_job(failed["id"], operator)["status"] == "failed"
        verify = client.post(f"/files/snapshots/{snap['id']}/verify", params={"full": "true"})
        assert api.wait_job(verify.json()["id"], operator)["result"]["ok"] is True
    with api.client(admin) as client:
        listed = client.get("/files/snapshots", params={"file_set": "up"}).json()["items"]
        assert [s["id"] for s in listed] == [snap["id"]]
        out = tmp_path / "elsewhere"
        plan = client.post(f"/files/snapshots/{snap['id']}/restore-plan", json={"to": str(out)})
        assert_error(plan, 403, "s3://")  # a request never names a place on disk
        plan = client.post(f"/files/snapshots/{snap['id']}/restore-plan", json={})
        assert plan.status_code == 200, plan.text
        assert plan.json()["unchanged"] == 12 and plan.json()["safety_snapshot"] is False
        wrong = client.post(f"/files/snapshots/{snap['id']}/restore", json={"confirm": "x"})
        assert_error(wrong, 403, "confirmation")
        job = client.post(f"/files/snapshots/{snap['id']}/restore", json={"confirm": "up"})
        done = api.wait_job(job.json()["id"], admin)
        assert done["status"] == "completed" and done["result"]["skipped_unchanged"] == 12
        assert client.get("/health").json()["checks"]["files"]["status"] == "critical"  # gone
    with api.client(viewer) as client:
        metrics = client.get(api.url + "/metrics").text
        assert 'pgvault_files_health_status{file_set="up"} 0.0' in metrics
        assert 'pgvault_files_health_status{file_set="gone"} 2.0' in metrics
        assert 'pgvault_file_snapshots_total{file_set="up",status="completed"} 1.0' in metrics
        health = client.get("/health/backups").json()
        assert health["status"] == "critical"


def test_scheduled_snapshots_run_once_per_slot_and_failures_are_told(tmp_path: Path) -> None:
    src = tmp_path / "uploads"
    make_tree(src, 3, 100)
    with webhook() as hook:
        settings = load_settings(
            home=tmp_path / "home",
            files={
                "up": {"source": str(src), "schedules": {"hourly": {"cron": "0 * * * *"}}},
                "gone": {
                    "source": str(tmp_path / "missing"),
                    "schedules": {"h": {"cron": "5 * * * *"}},
                },
            },
            notifications={"urls": [hook.apprise_url()]},
        )
        infos = {i.database: i for i in schedules.next_runs(settings) if i.kind == "files"}
        assert set(infos) == {"up", "gone"} and infos["up"].name == "hourly"
        catalog = Catalog.open(settings.catalog_location)
        scheduler = Scheduler(settings, catalog)
        job = next(s for s in scheduler.schedules if s.kind == "files" and s.database == "up")
        record = scheduler.run_files(job)
        assert record is not None
        assert scheduler.run_files(job) is None  # the same slot again: already done
        [row] = rows.list_snapshots(catalog, file_set="up")
        slot = latest_fire_time(job.trigger, row.started_at, 3600)
        assert slot is not None and row.labels["scheduled_for"] == slot_text(slot)
        assert row.trigger == "scheduled" and row.labels["schedule"] == "hourly"
        bad = next(s for s in scheduler.schedules if s.kind == "files" and s.database == "gone")
        assert scheduler.run_files(bad) is None
        [failed] = rows.list_snapshots(catalog, file_set="gone", statuses=("failed",))
        assert "does not exist" in (failed.error or "")
        [message] = hook.wait(1)
        assert "snapshot of file set gone failed" in message["title"]
        assert "does not exist" in message["message"]
        report = monitoring.health(settings, catalog)
        assert {f.file_set: f.status for f in report.file_sets} == {"up": "ok", "gone": "critical"}
        assert tree(src)  # the source is untouched
        catalog.engine.dispose()
