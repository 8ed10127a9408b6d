"""Synthetic catalogs: many backup rows over many databases, written through the catalog's
own API (:meth:`pgvault.catalog.Catalog.save_backups`), for the catalog benchmark and its
small test version.

The rows look like an installation backing up each database hourly: ``databases`` names
``db000``, ``db001``, ...; each database's newest backup is near ``now`` and its older ones
one hour apart, so 100,000 rows over 100 databases span about 42 days. Among them, at fixed
positions: failed and interrupted runs, manual backups, a database whose last run failed,
one whose newest backup shrank, and exact ties of ``started_at`` between two databases
(``id`` breaks them). Rows are ``deleted`` (labelled ``deleted_by=retention``) as the
policy :data:`POLICY` would have left them when applied an hour ago (older than 30 days;
failed or interrupted and older than 7 days), and the oldest tenth of each database too,
so a prune finds about one row per database due, as after hourly runs. Deterministic for
given arguments.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from pgvault.catalog.records import BackupRecord

ENVIRONMENTS = ("production", "production", "staging", "staging", "development")
TABLES = tuple(f"public.table_{n:02d}" for n in range(20))
POLICY = {"max_age_days": 30, "keep_daily": 7, "failed_max_age_days": 7}
"""The retention policy the rows were pruned by (``[databases.NAME.retention]``)."""
KEPT_HOURS = 30 * 24
FAILED_HOURS = 7 * 24


def database_names(databases: int) -> list[str]:
    """``db000`` ... ``db{databases-1}``."""
    return [f"db{d:03d}" for d in range(databases)]


def environment_of(d: int) -> str:
    """The environment of database number ``d``."""
    return ENVIRONMENTS[d % len(ENVIRONMENTS)]


def _status(d: int, k: int, count: int) -> str:
    if k == 0 and d % 10 == 4:
        return "failed"  # this database's last run failed
    if k >= count - count // 10 or k > KEPT_HOURS:
        return "deleted"
    ended = "failed" if k % 41 == 5 else "interrupted" if k % 97 == 7 else "completed"
    if ended != "completed" and k > FAILED_HOURS:
        return "deleted"
    return ended


def synthetic_record(d: int, k: int, count: int, now: datetime) -> BackupRecord:
    """Backup number ``k`` (0: newest) of database number ``d``, which has ``count``."""
    name = f"db{d:03d}"
    started = now - timedelta(hours=k, seconds=7 * (d // 2) + 60)  # databases 2n and 2n+1 tie
    backup_id = f"{started:%Y%m%d-%H%M%S}-{d:04x}"
    status = _status(d, k, count)
    noise = int(hashlib.sha256(backup_id.encode()).hexdigest()[:6], 16)
    size = 50_000_000 + noise % 5_000_000
    if k == 0 and d % 10 == 5:
        size //= 10  # shrunk: the health size check warns
    duration = 30.0 + noise % 270
    scheduled = k % 24 != 0
    labels = {"schedule": "hourly", "slot": f"{started:%Y-%m-%dT%H:00Z}"} if scheduled else {}
    if status == "deleted":
        labels["deleted_by"] = "retention"
    fields: dict[str, Any] = {
        "id": backup_id,
        "database": name,
        "dbname": name,
        "server": "db.internal:5432",
        "environment": environment_of(d),
        "trigger": "scheduled" if scheduled else "manual",
        "status": status,
        "format": "custom",
        "compression": "zstd",
        "compressed_by": "pg_dump",
        "labels": labels,
        "storage": "local",
        "storage_key": f"{name}/{started:%Y/%m/%d}/{backup_id}.dump",
        "size_bytes": None if status in ("failed", "interrupted") else size,
        "sha256": hashlib.sha256(backup_id.encode()).hexdigest(),
        "server_version": "18.1",
        "pg_dump_version": "18.1",
        "started_at": started,
        "finished_at": started + timedelta(seconds=duration),
        "duration_seconds": duration,
        "error": "pg_dump: error: connection lost" if status == "failed" else None,
        "row_counts": {t: (noise + i * 997) % 1_000_000 for i, t in enumerate(TABLES)},
        "object_counts": {"TABLE": len(TABLES), "INDEX": 2 * len(TABLES), "SEQUENCE": 5},
        "created_by": "scheduler" if scheduled else "cli:ops",
        "runner": "bench-host:1",
    }
    return BackupRecord.model_validate(fields)


def synthetic_records(
    total: int, databases: int = 100, now: datetime | None = None
) -> Iterator[BackupRecord]:
    """``total`` rows over ``databases`` databases (as even as can be), newest first per
    database, databases interleaved; ``now`` defaults to the current time (UTC)."""
    at = (now or datetime.now(UTC)).replace(microsecond=0)
    counts = [total // databases + (1 if d < total % databases else 0) for d in range(databases)]
    for k in range(max(counts, default=0)):
        for d in range(databases):
            if k < counts[d]:
                yield synthetic_record(d, k, counts[d], at)
