"""Second copies of backups on other storage targets (the 3-2-1 rule), choosing which copy
to read (the primary when healthy, else the first healthy copy), and deleting one copy.

The primary copy is the one at ``record.storage``; the others are ``backup_copies`` rows.
Deleting the primary while other copies live first makes one of them the primary, so
``record.storage`` always names a place holding the backup while its row is completed.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from pgvault import storage
from pgvault.catalog import Catalog, days
from pgvault.catalog.records import BackupCopy, BackupRecord, manifest_key_for
from pgvault.catalog.retention import live_targets
from pgvault.config.settings import Settings
from pgvault.dumps.layers import HashingWriter, copy_stream
from pgvault.errors import NotFound, PgvaultError, StorageError
from pgvault.storage import Storage

log = logging.getLogger(__name__)


def stored_keys(record: BackupRecord) -> list[str]:
    """Every key a backup occupies on a target: object, globals, manifest."""
    keys = [record.storage_key]
    if record.globals_key:
        keys.append(record.globals_key)
    keys.append(manifest_key_for(record.storage_key))
    return keys


def replicate(
    settings: Settings, catalog: Catalog, record: BackupRecord, targets: list[str]
) -> list[BackupCopy]:
    """Copy a completed backup to each of ``targets`` (names or URLs), streaming, and check
    each copy's sha256 against the record. A failed copy is recorded, never raised: the
    backup itself stays completed."""
    source = storage.resolve(settings, record.storage)
    made = []
    for name in targets:
        target = storage.resolve(settings, name, database=record.database)
        copy = BackupCopy(
            backup_id=record.id,
            storage=target.name,
            storage_key=record.storage_key,
            status="failed",
        )
        try:
            target.check_writable()
            for key in stored_keys(record):
                size, sha256 = _copy_object(source, target, key)
                if key == record.storage_key:
                    if sha256 != record.sha256:
                        raise StorageError(
                            f"copy on {target.name} has another sha256 than the backup"
                        )
                    copy.size_bytes, copy.sha256 = size, sha256
            copy.status = "completed"
            copy.copied_at = datetime.now(UTC)
        except PgvaultError as exc:
            copy.error = str(exc)
            log.warning("copy of backup %s to %s failed: %s", record.id, target.name, exc)
            for key in stored_keys(record):
                _quiet_delete(target, key)
        catalog.save_copy(copy)
        made.append(copy)
    return made


def _copy_object(source: Storage, target: Storage, key: str) -> tuple[int, str]:
    writer = target.open_write(key)
    hashing = HashingWriter(writer)
    try:
        with source.open_read(key) as stream:
            copy_stream(stream, hashing)
        writer.commit()
    except BaseException:
        writer.abort()
        raise
    return hashing.size, hashing.sha256


def _quiet_delete(store: Storage, key: str) -> None:
    try:
        store.discard_partial(key)
        store.delete(key)
    except PgvaultError as exc:
        log.warning("could not remove %s from %s: %s", key, store.name, exc)


def readable_location(settings: Settings, catalog: Catalog, record: BackupRecord) -> Storage:
    """The target to read a backup from: its primary if the object is there with the
    recorded size, else the first completed copy that is.

    Raises:
        NotFound: no target holds an intact object.
    """
    candidates = live_targets(record, catalog.copies_of([record.id]).get(record.id, []))
    problems = []
    for name in candidates:
        try:
            store = storage.resolve(settings, name)
            info = store.stat(record.storage_key)
        except PgvaultError as exc:
            problems.append(f"{name}: {exc}")
            continue
        if info is not None and info.size == record.size_bytes:
            if name != record.storage:
                log.warning(
                    "backup %s: primary unavailable, reading the copy on %s", record.id, name
                )
            return store
        problems.append(f"{name}: object missing or of the wrong size")
    raise NotFound(f"no intact copy of backup {record.id}: " + "; ".join(problems))


def remove_copies(settings: Settings, catalog: Catalog, record: BackupRecord) -> None:
    """Delete every copy's pieces, then mark each copy row ``deleted``."""
    for copy in catalog.copies_of([record.id]).get(record.id, []):
        if copy.status == "deleted":
            continue
        try:
            target = storage.resolve(settings, copy.storage)
        except PgvaultError as exc:
            log.warning("copy target %s unavailable: %s", copy.storage, exc)
            continue
        for key in stored_keys(record):
            _quiet_delete(target, key)
        copy.status = "deleted"
        catalog.save_copy(copy)


def delete_copy(
    settings: Settings, catalog: Catalog, record: BackupRecord, target: str, *, by: str
) -> bool:
    """Delete a completed backup's copy on ``target`` (object, globals, manifest), leaving
    its other copies alone.

    The primary (``record.storage``) is first handed to another live copy when there is
    one; the copy row is marked ``deleted`` after its pieces are gone. The last copy takes
    the row with it: the row is marked ``deleted`` (labelled ``deleted_by=<by>``). A crash
    midway leaves a live row whose next deletion finishes the job.

    Args:
        target: the storage target name (or URL) of the copy.
        by: who deletes (``retention``), for the row's label.

    Returns:
        True when this was the last copy and the row is now ``deleted``.

    Raises:
        StorageError: the target failed; the copy is still recorded as live.
        ConfigError: the target is no longer configured.
    """
    rows = catalog.copies_of([record.id]).get(record.id, [])
    remaining = [t for t in live_targets(record, rows) if t != target]
    if target == record.storage and remaining:
        catalog.save_copy(_copy_row(record, record.storage, "completed"))
        record.storage = remaining[0]
        catalog.save_backup(record)
        log.info("backup %s: primary copy moved to %s", record.id, record.storage)
    store = storage.resolve(settings, target)
    for key in stored_keys(record):
        if not remaining:
            store.discard_partial(key)
        store.delete(key)
    if any(row.storage == target for row in rows) or remaining:
        catalog.save_copy(_copy_row(record, target, "deleted"))
    if remaining:
        return False
    record.status = "deleted"
    record.labels = {**record.labels, DELETED_BY_LABEL: by}
    catalog.save_backup(record)
    return True


DELETED_BY_LABEL = days.PRUNED_BY[0]
"""Label of a deleted row naming who deleted it (``retention``)."""


def _copy_row(record: BackupRecord, target: str, status: str) -> BackupCopy:
    return BackupCopy.model_validate(
        {
            "backup_id": record.id,
            "storage": target,
            "storage_key": record.storage_key,
            "status": status,
            "size_bytes": record.size_bytes,
            "sha256": record.sha256,
            "copied_at": record.finished_at,
        }
    )


__all__ = [
    "NotFound",
    "delete_copy",
    "readable_location",
    "remove_copies",
    "replicate",
    "stored_keys",
]
