"""The manifests beside each stored backup: listing a target from them, and rebuilding the
catalog from them (a manifest is the backup's catalog row as JSON)."""

from __future__ import annotations

import logging

from pgvault.catalog import Catalog
from pgvault.catalog.records import BackupRecord, manifest_key_for
from pgvault.storage import Storage

log = logging.getLogger(__name__)


def stored_manifests(store: Storage) -> list[BackupRecord]:
    """The backups a storage target holds, read from their manifests (oldest first).

    Manifests whose backup object is missing are skipped with a warning; ``storage`` of
    each record is set to ``store``'s name. Works across environments sharing one bucket.

    Raises:
        StorageError: the target cannot be listed or read.
    """
    keys = {info.key for info in store.list()}
    found = []
    for key in sorted(keys):
        if not key.endswith(".manifest.json"):
            continue
        try:
            record = BackupRecord.model_validate_json(store.read_bytes(key))
        except ValueError as exc:
            log.warning("skipping unreadable manifest %s: %s", key, exc)
            continue
        if record.storage_key not in keys or manifest_key_for(record.storage_key) != key:
            log.warning("skipping manifest %s: its backup object is missing", key)
            continue
        record.storage = store.name
        found.append(record)
    return sorted(found, key=lambda r: r.started_at)


def rebuild_catalog(catalog: Catalog, store: Storage) -> list[BackupRecord]:
    """Recreate catalog rows from the manifests stored beside each backup; existing rows
    are replaced. Returns the records written, oldest first.

    Raises:
        StorageError: the target cannot be listed or read.
    """
    records = stored_manifests(store)
    for record in records:
        catalog.save_backup(record)
    return records
