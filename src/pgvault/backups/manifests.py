"""The manifests beside each stored backup: listing a target from them, and rebuilding the
catalog from them (a manifest is the backup's catalog row as JSON).

Manifests are small objects read one request each, so they are read :data:`READERS` at a
time (S3 answers each GET in milliseconds but one after another would take minutes for
thousands); the rows are written to the catalog in batches.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

from pgvault.catalog import Catalog
from pgvault.catalog.records import BackupRecord, manifest_key_for
from pgvault.storage import Storage

log = logging.getLogger(__name__)

READERS = 10
"""Manifests read at once (threads: boto3 clients are thread-safe; botocore keeps 10
connections per client by default, so more threads would only wait or reconnect)."""


def _read(store: Storage, key: str) -> BackupRecord | None:
    """The record in manifest ``key``, or None (logged) when it is not a manifest."""
    try:
        return BackupRecord.model_validate_json(store.read_bytes(key))
    except ValueError as exc:
        log.warning("skipping unreadable manifest %s: %s", key, exc)
        return None


def _read_all(store: Storage, keys: list[str]) -> Iterator[tuple[str, BackupRecord | None]]:
    """``(key, record)`` of each of ``keys`` in order, :data:`READERS` reads at a time (the
    first alone, so a backend's lazily built client is built once)."""
    if not keys:
        return
    yield keys[0], _read(store, keys[0])
    with ThreadPoolExecutor(max_workers=READERS, thread_name_prefix="manifest") as pool:
        yield from zip(keys[1:], pool.map(lambda key: _read(store, key), keys[1:]), strict=True)


def stored_manifests(store: Storage) -> list[BackupRecord]:
    """The backups a storage target holds, read from their manifests (oldest first).

    Manifests whose backup object is missing are skipped with a warning; ``storage`` of
    each record is set to ``store``'s name. Works across environments sharing one bucket.
    Reads :data:`READERS` manifests at a time.

    Raises:
        StorageError: the target cannot be listed or read.
    """
    keys = {info.key for info in store.list()}
    manifests = sorted(key for key in keys if key.endswith(".manifest.json"))
    found = []
    for key, record in _read_all(store, manifests):
        if record is None:
            continue
        if record.storage_key not in keys or manifest_key_for(record.storage_key) != key:
            log.warning("skipping manifest %s: its backup object is missing", key)
            continue
        record.storage = store.name
        found.append(record)
    return sorted(found, key=lambda r: r.started_at)


def rebuild_catalog(catalog: Catalog, store: Storage) -> list[BackupRecord]:
    """Recreate catalog rows from the manifests stored beside each backup; existing rows
    are replaced (in batches of :data:`pgvault.catalog.backups.BATCH_ROWS` per
    transaction). Returns the records written, oldest first.

    Raises:
        StorageError: the target cannot be listed or read.
        CatalogError: the rows cannot be written.
    """
    records = stored_manifests(store)
    catalog.save_backups(records)
    return records
