"""Applying retention: decide with :mod:`~pgvault.operations.retention`, then delete safely.

A deletion removes, in this order: the stored object, its globals and its manifest on the
primary target, then the same pieces on every copy (each copy row marked ``deleted``), and
only then marks the backup row ``deleted`` (kept for history, labelled
``deleted_by=retention``). A crash midway leaves a ``completed`` row that the next run deletes
again (deleting a missing object is not an error); a storage error stops that backup's
deletion and leaves its row as it was.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from pgvault import storage
from pgvault.backups import copies
from pgvault.catalog import Catalog, locks
from pgvault.catalog.records import BackupRecord
from pgvault.config.operations import RetentionSettings
from pgvault.config.settings import Settings
from pgvault.errors import PgvaultError
from pgvault.operations import retention

log = logging.getLogger(__name__)

DELETED_BY_LABEL = "deleted_by"


@dataclass(frozen=True)
class PruneItem:
    """One row's outcome.

    Attributes:
        database, backup_id, status, trigger, started_at (UTC), size_bytes: from the row.
        keep: the decision; ``reasons`` says which rule.
        deleted: the deletion was carried out (False in a dry run or on error).
        error: why the deletion failed (one line), else None.
    """

    database: str
    backup_id: str
    status: str
    trigger: str
    started_at: datetime
    size_bytes: int | None
    keep: bool
    reasons: tuple[str, ...]
    deleted: bool = False
    error: str | None = None


def policies(
    settings: Settings, database: str
) -> tuple[RetentionSettings | None, dict[str, RetentionSettings]]:
    """The database's policy and its schedules' own policies, from the config."""
    db = settings.databases.get(database)
    if db is None:
        return None, {}
    own = {name: s.retention for name, s in db.schedules.items() if s.retention is not None}
    return db.retention, own


def plan(
    settings: Settings,
    catalog: Catalog,
    database: str,
    *,
    keep_last: int | None = None,
    now: datetime | None = None,
) -> list[tuple[BackupRecord, retention.Decision]]:
    """The decisions for one database's rows, newest first (no change made).

    Args:
        keep_last: replace the configured policies by "keep the last N" (ad hoc).
        now: the current time (default: now, UTC).
    """
    history = catalog.list_backups(database=database, include_deleted=False)
    if keep_last is not None:
        decisions = retention.decide_database(
            history, retention.with_keep_last(keep_last), {}, now or datetime.now(UTC)
        )
    else:
        policy, own = policies(settings, database)
        decisions = retention.decide_database(history, policy, own, now or datetime.now(UTC))
    by_id = {r.id: r for r in history}
    return [(by_id[d.backup_id], d) for d in decisions]


def apply(
    settings: Settings,
    catalog: Catalog,
    *,
    database: str | None = None,
    dry_run: bool = False,
    keep_last: int | None = None,
    now: datetime | None = None,
) -> list[PruneItem]:
    """Apply retention to one database or (None) every configured or catalogued one.

    Each database is pruned under the lock ``prune:<database>``; a database whose prune is
    already running elsewhere is skipped (logged). Nothing raises for one backup's storage
    error: it is reported in its item's ``error`` and the others go on.

    Args:
        dry_run: decide and report only.
        keep_last: ad-hoc "keep the last N" instead of the configured policies.
        now: the current time (default: now, UTC).

    Returns:
        One item per non-deleted row considered, per database newest first.

    Raises:
        ConfigError: a policy's time zone is unknown.
        CatalogError: the catalog cannot be read.
    """
    if database is not None:
        names = [database]
    else:
        names = sorted(set(settings.databases) | {row["database"] for row in catalog.stats()})
        names += sorted(
            {r.database for r in catalog.list_backups()} - set(names)
        )  # databases with only failed rows
    items: list[PruneItem] = []
    for name in names:
        with locks.exclusive(settings, catalog, f"prune:{name}") as got:
            if not got:
                log.info("retention of %s is already being applied elsewhere: skipped", name)
                continue
            for record, decision in plan(settings, catalog, name, keep_last=keep_last, now=now):
                items.append(_carry_out(settings, catalog, record, decision, dry_run))
    return items


def _carry_out(
    settings: Settings,
    catalog: Catalog,
    record: BackupRecord,
    decision: retention.Decision,
    dry_run: bool,
) -> PruneItem:
    item = PruneItem(
        database=record.database,
        backup_id=record.id,
        status=record.status,
        trigger=record.trigger,
        started_at=record.started_at,
        size_bytes=record.size_bytes,
        keep=decision.keep,
        reasons=decision.reasons,
    )
    if decision.keep or dry_run:
        return item
    try:
        delete_everywhere(settings, catalog, record)
    except PgvaultError as exc:
        log.warning("retention could not delete backup %s: %s", record.id, exc)
        return replace(item, error=str(exc))
    log.info(
        "retention deleted backup %s of %s (%s)",
        record.id,
        record.database,
        "; ".join(decision.reasons),
    )
    return replace(item, deleted=True)


def delete_everywhere(settings: Settings, catalog: Catalog, record: BackupRecord) -> None:
    """Delete a backup's pieces on its primary target and every copy, then mark its row
    ``deleted`` (in that order).

    Raises:
        StorageError: a target failed; the row (and the copies not yet done) are unchanged.
        ConfigError: a target name is no longer configured.
    """
    if record.storage and record.storage_key:
        store = storage.resolve(settings, record.storage)
        for key in copies.stored_keys(record):
            store.discard_partial(key)
            store.delete(key)
    for copy in catalog.copies_of([record.id]).get(record.id, []):
        if copy.status == "deleted":
            continue
        target = storage.resolve(settings, copy.storage)
        for key in copies.stored_keys(record):
            target.delete(key)
        copy.status = "deleted"
        catalog.save_copy(copy)
    record.status = "deleted"
    record.labels = {**record.labels, DELETED_BY_LABEL: "retention"}
    catalog.save_backup(record)
