"""Retention of file snapshots: the databases' policy forms, then mark and sweep of blobs.

1. **Decide** with :func:`pgvault.operations.retention.decide_database` (keep_last,
   max_age_days, GFS, per-schedule policies; the newest completed snapshot of a set is
   never deleted, pinned and pre-restore ones are exempt unless the policy includes them).
2. **Delete** each dropped snapshot's manifest and index on its target and its copies,
   then mark its row ``deleted``.
3. **Sweep** every target of the set: *mark* the blobs the indexes of all kept snapshots
   there reference, then delete the other blobs older than ``blob_grace_hours``, plus
   orphaned manifests and writers' leftovers older than that.

Safe against a snapshot running at the same time: the sweep is skipped while one runs;
a snapshot reuses an unreferenced stored blob only if it is younger than half the grace
(so no sweep can take it before that snapshot commits), and writes an older one again;
blobs it writes itself are younger than the grace. An unreadable index stops the sweep
(nothing is deleted on doubt).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

from pgvault.catalog import Catalog, locks
from pgvault.catalog import files as rows
from pgvault.catalog.files import FileSnapshotRecord
from pgvault.config.operations import RetentionSettings
from pgvault.config.settings import Settings
from pgvault.errors import PgvaultError
from pgvault.files import sets
from pgvault.files.blobs import set_root
from pgvault.files.manifest import index_blobs
from pgvault.operations import retention

log = logging.getLogger(__name__)

DEFAULT_GRACE_HOURS = 48.0


@dataclass(frozen=True)
class FilePruneItem:
    """One snapshot's fate (``reasons`` names the rule; ``error`` a failed deletion)."""

    file_set: str
    snapshot_id: str
    status: str
    trigger: str
    started_at: datetime
    bytes: int | None
    keep: bool
    reasons: tuple[str, ...]
    deleted: bool = False
    error: str | None = None


@dataclass
class SweepResult:
    """One target's sweep: blobs referenced by kept snapshots, blobs and bytes deleted,
    or why the sweep was skipped."""

    file_set: str
    storage: str
    referenced: int = 0
    deleted_blobs: int = 0
    deleted_bytes: int = 0
    deleted_other: int = 0
    skipped: str | None = None


@dataclass
class FilePruneReport:
    """Everything one retention pass did."""

    items: list[FilePruneItem] = field(default_factory=list)
    sweeps: list[SweepResult] = field(default_factory=list)


def policies(
    settings: Settings, file_set: str
) -> tuple[RetentionSettings | None, dict[str, RetentionSettings]]:
    """The set's policy and its schedules' own policies."""
    cfg = settings.files.get(file_set)
    if cfg is None:
        return None, {}
    own = {n: s.retention for n, s in cfg.schedules.items() if s.retention is not None}
    return cfg.retention, own


def plan(
    settings: Settings,
    catalog: Catalog,
    file_set: str,
    *,
    keep_last: int | None = None,
    now: datetime | None = None,
) -> list[tuple[FileSnapshotRecord, retention.Decision]]:
    """The decisions for one set's rows, newest first (nothing changed)."""
    history = rows.list_snapshots(catalog, file_set=file_set)
    at = now or datetime.now(UTC)
    policy, own = policies(settings, file_set)
    if keep_last is not None:  # ad hoc, still under the set's minimum_redundancy
        adhoc = retention.with_keep_last(keep_last, policy)
        decisions = retention.decide_database(history, adhoc, {}, at)
    else:
        decisions = retention.decide_database(history, policy, own, at)
    by_id = {r.id: r for r in history}
    return [(by_id[d.backup_id], d) for d in decisions]


def apply(
    settings: Settings,
    catalog: Catalog,
    *,
    file_set: str | None = None,
    dry_run: bool = False,
    keep_last: int | None = None,
    now: datetime | None = None,
) -> FilePruneReport:
    """Apply retention to one set or every configured or catalogued one, under the lock
    ``files-prune:<set>`` (a set being pruned elsewhere is skipped). A storage error on
    one snapshot is reported in its item and the others go on.

    Raises:
        ConfigError: a policy's time zone is unknown.
        CatalogError: the catalog cannot be read.
    """
    names = (
        [file_set] if file_set else sorted(set(settings.files) | set(rows.file_set_names(catalog)))
    )
    report = FilePruneReport()
    for name in names:
        with locks.exclusive(settings, catalog, f"files-prune:{name}") as got:
            if not got:
                log.info("retention of file set %s is running elsewhere: skipped", name)
                continue
            for record, decision in plan(settings, catalog, name, keep_last=keep_last, now=now):
                report.items.append(_carry_out(settings, catalog, record, decision, dry_run))
            if not dry_run:
                for storage in _targets(settings, catalog, name):
                    report.sweeps.append(sweep(settings, catalog, name, storage, now=now))
    return report


def _carry_out(
    settings: Settings,
    catalog: Catalog,
    record: FileSnapshotRecord,
    decision: retention.Decision,
    dry_run: bool,
) -> FilePruneItem:
    item = FilePruneItem(
        record.file_set,
        record.id,
        record.status,
        record.trigger,
        record.started_at,
        record.bytes,
        decision.keep,
        decision.reasons,
    )
    if decision.keep or dry_run:
        return item
    try:
        delete_snapshot(settings, catalog, record, by="retention")
    except PgvaultError as exc:
        log.warning("retention could not delete file snapshot %s: %s", record.id, exc)
        return replace(item, error=str(exc))
    return replace(item, deleted=True)


def delete_snapshot(
    settings: Settings, catalog: Catalog, record: FileSnapshotRecord, *, by: str = "user"
) -> FileSnapshotRecord:
    """Remove a snapshot's manifest and index from its target and every copy, then mark
    the row ``deleted`` (its blobs go at the next sweep, if nothing else references them).

    Raises:
        StorageError: a target failed; the row is unchanged.
    """
    store = sets.open_target(settings, record.storage)
    for key in (record.manifest_key, record.index_key):
        store.discard_partial(key)
        store.delete(key)
    for copy in rows.copies_of(catalog, record.id):
        if copy.status == "completed":
            target = sets.open_target(settings, copy.storage)
            for key in (record.manifest_key, record.index_key):
                target.delete(key)
        copy.status = "deleted"
        rows.save_copy(catalog, copy)
    record.status = "deleted"
    record.labels = {**record.labels, "deleted_by": by}
    rows.save_snapshot(catalog, record)
    log.info("file snapshot %s deleted (%s)", record.id, by)
    return record


def _targets(settings: Settings, catalog: Catalog, file_set: str) -> list[str]:
    found: list[str] = []
    cfg = settings.files.get(file_set)
    if cfg is not None:
        found += sets.storage_names(settings, cfg)
    for record in rows.list_snapshots(catalog, file_set=file_set, include_deleted=True, limit=50):
        if record.storage not in found:
            found.append(record.storage)
    return found


def _kept_on(catalog: Catalog, file_set: str, storage: str) -> list[FileSnapshotRecord]:
    kept = []
    for record in rows.list_snapshots(catalog, file_set=file_set, statuses=("completed",)):
        if record.storage == storage:
            kept.append(record)
        elif any(
            c.storage == storage and c.status == "completed"
            for c in rows.copies_of(catalog, record.id)
        ):
            kept.append(record)
    return kept


def sweep(
    settings: Settings,
    catalog: Catalog,
    file_set: str,
    storage: str,
    *,
    now: datetime | None = None,
) -> SweepResult:
    """Mark and sweep one target of a set (see the module docstring).

    Returns:
        What was deleted, or why nothing was (``skipped``).
    """
    result = SweepResult(file_set, storage)
    started = now or datetime.now(UTC)
    cfg = settings.files.get(file_set)
    grace = timedelta(hours=cfg.blob_grace_hours if cfg else DEFAULT_GRACE_HOURS)
    cutoff = started - grace
    if rows.list_snapshots(catalog, file_set=file_set, statuses=("running",), limit=1):
        result.skipped = "a snapshot of the set is running"
        return result
    try:
        store = sets.open_target(settings, storage)
        referenced: set[str] = set()
        keep_ids: set[str] = set()
        for record in _kept_on(catalog, file_set, storage):
            keep_ids.add(record.id)
            referenced.update(blob.key for blob in index_blobs(store, record))
        result.referenced = len(referenced)
        root = set_root(file_set)
        doomed = [
            info
            for info in store.list(root + "blobs")
            if info.key not in referenced and info.modified < cutoff
        ]
        orphans = [
            info.key
            for info in store.list(root + "snapshots/")
            if info.key.rsplit("/", 1)[-1].split(".", 1)[0] not in keep_ids
            and info.modified < cutoff
        ]
        if rows.list_snapshots(catalog, file_set=file_set, statuses=("running",), limit=1):
            result.skipped = "a snapshot of the set started during the sweep"
            return result
        for info in doomed:
            store.delete(info.key)
            result.deleted_blobs += 1
            result.deleted_bytes += info.size
        for key in orphans:
            store.delete(key)
            result.deleted_other += 1
        result.deleted_other += store.discard_partials(root, cutoff)
    except PgvaultError as exc:
        log.warning("sweep of file set %s on %s stopped: %s", file_set, storage, exc)
        result.skipped = f"stopped: {exc}"
        return result
    if result.deleted_blobs or result.deleted_other:
        log.info(
            "swept file set %s on %s: %d blobs (%d bytes), %d other objects",
            file_set,
            storage,
            result.deleted_blobs,
            result.deleted_bytes,
            result.deleted_other,
        )
    return result
