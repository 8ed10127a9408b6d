"""The restore drill restores the newest completed backup into a scratch database and
records the result; a corrupt backup fails it and notifies ``verify_failed``. A slot that
already has its backup is not run again."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from pgvault.operations import schedules
from pgvault.operations.scheduler import SLOT_LABEL, Scheduler
from support.pgcluster import FreshPagila, PgCluster
from support.receivers import webhook
from support.vault import Vault


def test_drill_verifies_the_newest_backup_and_reports_corruption(
    pg18: PgCluster, fresh_pagila: FreshPagila, tmp_path: Path
) -> None:
    db = fresh_pagila()
    with webhook() as hook:
        vault = Vault.open(
            tmp_path / "home",
            databases={
                "app": {
                    "url": pg18.url(db, with_password=True),
                    "schedules": {"nightly": {"cron": "0 2 * * *"}},
                    "verify": {"cron": "0 5 * * 6"},
                }
            },
            notifications={"urls": [hook.apprise_url()]},
            scheduler={"prune_cron": None},
        )
        jobs = {s.kind: s for s in schedules.configured(vault.settings)}
        sched = Scheduler(vault.settings, vault.catalog)
        slot = datetime(2026, 1, 1, 2, tzinfo=UTC)

        record = sched.run_backup(jobs["backup"], slot)
        again = sched.run_backup(jobs["backup"], slot)

        assert record is not None and again is None
        assert record.labels[SLOT_LABEL] == "2026-01-01T02:00:00+00:00"
        assert len(vault.catalog.list_backups()) == 1

        result = sched.run_verify(jobs["verify"])

        assert result is not None and result.ok and result.full
        checked = vault.catalog.get_backup(record.id)
        assert checked.verify_status == "ok" and checked.verified_at is not None
        assert not [d for d in pg18.databases() if "_pgvault_verify_" in d]
        assert hook.received == []

        with open(vault.stored(record), "ab") as stored:
            stored.write(b"rot")
        assert sched.run_verify(jobs["verify"]) is None

        [posted] = hook.wait(1)
        assert posted["title"] == "pgvault: restore drill of app failed"
        assert f"backup: {record.id}" in posted["message"]
        assert "corrupt" in posted["message"]
        assert vault.catalog.get_backup(record.id).verify_status == "failed"
        vault.close()
