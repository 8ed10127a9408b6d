"""Health, metrics and history reflect real backups: a fresh database, a stale one, one
whose last run failed, and one whose newest backup shrank (an app that lost its data)."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from pgvault import backups, databases
from pgvault.errors import BackupError
from pgvault.operations import monitoring, prune
from support.pgcluster import FreshPagila, PgCluster
from support.vault import Vault


def _samples(text: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text.decode()):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def test_health_metrics_and_history_of_fresh_stale_failed_and_shrunk_databases(
    pg18: PgCluster, fresh_pagila: FreshPagila, tmp_path: Path
) -> None:
    names = {role: fresh_pagila() for role in ("fresh", "stale", "failed", "shrunk")}
    vault = Vault.open(
        tmp_path / "home",
        databases={role: {"url": pg18.url(db, with_password=True)} for role, db in names.items()}
        | {
            "stale": {
                "url": pg18.url(names["stale"], with_password=True),
                "freshness": {"max_staleness_hours": 0.0003},  # ~1 s
            },
            "fresh": {
                "url": pg18.url(names["fresh"], with_password=True),
                "retention": {"minimum_redundancy": 1},
            },
        },
    )

    def backup(role: str, **options: object) -> None:
        target = databases.from_config(vault.settings, role)
        backups.create(vault.settings, vault.catalog, backups.BackupRequest(target, **options))

    backup("stale")
    backup("fresh")
    backup("fresh")
    backup("failed")
    with pytest.raises(BackupError):
        backup("failed", tables=["public.no_such_table"])
    backup("shrunk")
    pg18.psql("TRUNCATE payment, rental CASCADE", dbname=names["shrunk"])
    backup("shrunk")
    while (
        datetime.now(UTC) - vault.catalog.list_backups(database="stale")[0].started_at
    ).total_seconds() < 1.5:
        time.sleep(0.1)

    report = monitoring.health(vault.settings, vault.catalog)

    by_name = {d.database: d for d in report.databases}
    assert report.status == "critical"
    assert {n: d.status for n, d in by_name.items()} == {
        "fresh": "ok",
        "stale": "warning",
        "failed": "critical",
        "shrunk": "warning",
    }
    assert by_name["fresh"].max_staleness_seconds == 26 * 3600
    assert "h old" in by_name["stale"].reasons[0]
    assert "failed" in by_name["failed"].reasons[0]
    assert by_name["failed"].last_success_at is not None  # an older one completed
    assert "of the size of the one before" in by_name["shrunk"].reasons[0]

    gone = [
        i
        for i in prune.apply(vault.settings, vault.catalog, database="fresh", keep_last=1).items
        if i.deleted
    ]
    assert len(gone) == 1
    samples = _samples(monitoring.metrics_text(vault.settings, vault.catalog))

    def value(name: str, **labels: str) -> float:
        return samples[(name, tuple(sorted(labels.items())))]

    assert [value("pgvault_health_status", database=n) for n in names] == [0, 1, 2, 1]
    newest = vault.catalog.list_backups(database="fresh", status="completed")[0]
    assert newest.finished_at is not None
    assert value("pgvault_last_success_timestamp_seconds", database="fresh") == pytest.approx(
        newest.finished_at.timestamp()
    )
    assert value("pgvault_last_backup_size_bytes", database="fresh") == newest.size_bytes
    assert value("pgvault_last_backup_duration_seconds", database="fresh") > 0
    assert value("pgvault_backups_total", database="failed", status="failed") == 1
    assert value("pgvault_backups_total", database="failed", status="completed") == 1
    assert value("pgvault_backups_total", database="fresh", status="deleted") == 1
    assert value("pgvault_retention_deletions_total", database="fresh") == 1
    assert value("pgvault_scheduler_up") == 0

    [today] = {d.day for d in vault.catalog.history()}
    assert today == datetime.now(UTC).date()
    days = {d.database: d for d in vault.catalog.history()}
    assert (days["failed"].completed, days["failed"].failed) == (1, 1)
    assert (days["fresh"].completed, days["fresh"].deleted) == (1, 1)
    assert days["shrunk"].total_bytes == sum(
        r.size_bytes or 0 for r in vault.catalog.list_backups(database="shrunk")
    )
    vault.close()
