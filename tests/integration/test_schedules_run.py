"""A schedule firing every two seconds runs real backups of Pagila, one at a time, and
prunes them to ``keep_last``; stopping the scheduler with a running backup either lets it
finish within the grace period or interrupts it with nothing half-written."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from pgvault.catalog.records import BackupRecord
from pgvault.operations import scheduler
from support.pgcluster import FreshPagila, PgCluster
from support.vault import Vault


def _wait(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_schedule_runs_pagila_backups_and_prunes_to_keep_last(
    pg18: PgCluster, fresh_pagila: FreshPagila, tmp_path: Path
) -> None:
    db = fresh_pagila()
    vault = Vault.open(
        tmp_path / "home",
        databases={
            "app": {
                "url": pg18.url(db, with_password=True),
                "schedules": {"often": {"cron": "*/2 * * * * *"}},
                "retention": {"keep_last": 2, "minimum_redundancy": 2},
            }
        },
        scheduler={"prune_cron": None, "misfire_grace_seconds": 1},
    )
    sched = scheduler.start(vault.settings, vault.catalog)
    try:
        _wait(
            lambda: (
                len(vault.catalog.list_backups(include_deleted=True)) >= 4
                and len(vault.catalog.list_backups(status="deleted")) >= 2
            ),
            60,
            "four scheduled backups, two pruned",
        )
    finally:
        sched.shutdown(30)
    rows = vault.catalog.list_backups(include_deleted=True)
    assert {r.status for r in rows} <= {"completed", "deleted"}, [(r.status, r.error) for r in rows]
    assert all(r.trigger == "scheduled" and r.labels["schedule"] == "often" for r in rows)
    slots = [r.labels["scheduled_for"] for r in rows]
    assert len(slots) == len(set(slots)), "one backup per slot"
    kept = vault.catalog.list_backups(status="completed")
    assert len(kept) == 2 and kept[0].id == rows[0].id  # the newest stay
    deleted: list[BackupRecord] = vault.catalog.list_backups(status="deleted")
    assert all(r.labels["deleted_by"] == "retention" for r in deleted)
    stored = {str(p.relative_to(vault.backups_dir)) for p in vault.stored_files()}
    for record in deleted:
        assert not any(p.startswith(record.storage_key) for p in stored)
    for record in kept:
        assert record.storage_key in stored and record.manifest_key in stored
    vault.close()
