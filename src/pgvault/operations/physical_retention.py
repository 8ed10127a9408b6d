"""Retention of base backups and of the WAL archive.

Base backups follow the database's retention policy, decided by the same rules as its
dumps (:func:`pgvault.operations.retention.decide`: keep_last, max_age, GFS, the newest
completed never deleted), plus one rule of their own: a backup that a kept incremental
depends on (its parent, and that one's parent ...) is kept.

WAL: the segments before the start of the oldest kept base backup of a cluster are deleted
(every kept backup replays forward from its own start, so none needs them); nothing else.
Timeline history files are kept. A cluster with no kept base backup keeps all its WAL.
Objects are deleted from storage first, then their rows: a crash between the two leaves
a row whose object is gone, which the next run deletes again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime

from pgvault import storage
from pgvault.catalog import Catalog
from pgvault.catalog import physical as rows
from pgvault.catalog.physical import PhysicalBackupRecord
from pgvault.catalog.records import BackupRecord
from pgvault.config.operations import RetentionSettings
from pgvault.config.settings import Settings
from pgvault.errors import PgvaultError
from pgvault.operations import retention as rules
from pgvault.physical import basebackup, walnames

log = logging.getLogger(__name__)


@dataclass
class BackupFate:
    """What happens to one base backup, and why."""

    backup_id: str
    keep: bool
    reasons: list[str]
    error: str | None = None


@dataclass
class PruneReport:
    """One retention run of a database's physical backups and WAL."""

    database: str
    backups: list[BackupFate] = field(default_factory=list)
    wal_deleted: list[str] = field(default_factory=list)
    wal_kept_from: dict[str, str] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)


def _as_dump_row(record: PhysicalBackupRecord) -> BackupRecord:
    """The fields :func:`rules.decide` reads (id, times, status, trigger, pin, labels)."""
    return BackupRecord(
        id=record.id,
        database=record.database,
        dbname=record.database,
        server=record.server,
        trigger="scheduled" if record.trigger == "scheduled" else "manual",
        status=record.status,
        storage=record.storage,
        storage_key=record.storage_key,
        started_at=record.started_at,
        labels=record.labels,
        pinned=record.pinned,
    )


def decide(
    history: list[PhysicalBackupRecord], policy: RetentionSettings | None, now: datetime
) -> list[BackupFate]:
    """Keep or delete each base backup (pure; see the module docstring)."""
    decisions = rules.decide_database([_as_dump_row(r) for r in history], policy, now=now)
    fates = {d.backup_id: BackupFate(d.backup_id, d.keep, list(d.reasons)) for d in decisions}
    by_id = {r.id: r for r in history}
    for fate in list(fates.values()):
        if not fate.keep:
            continue
        parent = by_id[fate.backup_id].parent_id
        child = fate.backup_id
        while parent is not None and parent in fates:
            if not fates[parent].keep:
                fates[parent].keep = True
                fates[parent].reasons = [f"incremental {child} depends on it"]
            child, parent = parent, by_id[parent].parent_id
    return [fates[d.backup_id] for d in decisions]


def wal_cutoffs(history: list[PhysicalBackupRecord], kept: set[str]) -> dict[str, str]:
    """Per system identifier, the start segment of its oldest kept completed base backup."""
    cutoffs: dict[str, tuple[int, str]] = {}
    for record in history:
        if record.id not in kept or record.status != "completed":
            continue
        if record.system_identifier is None or record.start_wal is None:
            continue
        size = record.segment_size or walnames.DEFAULT_SEGMENT_SIZE
        number = walnames.parse_segment(record.start_wal, size).number
        best = cutoffs.get(record.system_identifier)
        if best is None or number < best[0]:
            cutoffs[record.system_identifier] = (number, record.start_wal)
    return {sysid: name for sysid, (_n, name) in cutoffs.items()}


def apply(
    settings: Settings,
    catalog: Catalog,
    database: str,
    *,
    dry_run: bool = False,
    policy: RetentionSettings | None = None,
    now: datetime | None = None,
) -> PruneReport:
    """Apply retention to ``database``'s base backups, then to its WAL.

    Args:
        policy: overrides the database's configured ``retention``.

    Returns:
        What was (or, with ``dry_run``, would be) deleted and kept. Storage failures are
        recorded per item; the rest goes on.
    """
    at = now or datetime.now(UTC)
    db = settings.databases.get(database)
    chosen = policy or (db.retention if db is not None else None)
    history = rows.list_backups(catalog, database=database)
    report = PruneReport(database)
    report.backups = decide(history, chosen, at)
    by_id = {r.id: r for r in history}
    for fate in sorted(report.backups, key=lambda f: by_id[f.backup_id].started_at):
        if fate.keep or dry_run:
            continue
        record = by_id[fate.backup_id]
        try:
            if record.system_identifier is not None:
                basebackup.remove_stored(storage.resolve(settings, record.storage), record)
            record.status = "deleted"
            record.labels = {**record.labels, "deleted_by": "retention"}
            rows.save_backup(catalog, record)
        except PgvaultError as exc:
            fate.error = str(exc)
            report.errors.append(f"base backup {record.id}: {exc}")
    kept = {f.backup_id for f in report.backups if f.keep}
    report.wal_kept_from = wal_cutoffs(history, kept)
    _prune_wal(settings, catalog, database, report, dry_run)
    return report


def _prune_wal(
    settings: Settings, catalog: Catalog, database: str, report: PruneReport, dry_run: bool
) -> None:
    for sysid, first_kept in report.wal_kept_from.items():
        for record in rows.segments(catalog, system_identifier=sysid, history=False):
            if record.database != database or record.segment_number is None:
                continue
            # the 16 hex digits after the timeline are the WAL position, fixed width
            if record.name[8:] >= first_kept[8:]:
                continue
            report.wal_deleted.append(record.name)
            if dry_run:
                continue
            try:
                storage.resolve(settings, record.storage).delete(record.storage_key)
                rows.delete_segment(catalog, sysid, record.name)
            except PgvaultError as exc:
                report.errors.append(f"WAL {record.name}: {exc}")
    if report.wal_deleted and not dry_run:
        log.info("retention deleted %d WAL segments of %s", len(report.wal_deleted), database)
