"""Deleting backups: every stored piece on every target, then the row marked ``deleted``."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

from pgvault import storage
from pgvault.backups import copies
from pgvault.catalog import Catalog
from pgvault.catalog.records import BackupRecord
from pgvault.config.settings import Settings
from pgvault.errors import PgvaultError
from pgvault.storage import Storage

log = logging.getLogger(__name__)

CLEANUP_RETRY_DELAYS = (1.0, 2.0, 4.0, 8.0)  # seconds between attempts while storage is down


def remove_stored(
    store: Storage, record: BackupRecord, retry_delays: Sequence[float] = CLEANUP_RETRY_DELAYS
) -> None:
    """Remove a backup's object, partial writes (open multipart uploads), globals and
    manifest from ``store``; missing ones are fine. Storage errors are retried after the
    ``retry_delays`` (seconds, one budget for all keys), so a short outage still ends with
    nothing left; past the budget a piece is logged and left."""
    keys = copies.stored_keys(record)
    keys += [record.storage_key + ".globals.sql", record.storage_key + ".globals.sql.age"]
    delays = list(retry_delays)
    for key in keys:
        while True:
            try:
                store.discard_partial(key)
                store.delete(key)
                break
            except PgvaultError as exc:
                if not delays:
                    log.warning("could not remove %s: %s", key, exc)
                    break
                delay = delays.pop(0)
                log.info("removing %s failed (%s); retrying in %.0f s", key, exc, delay)
                time.sleep(delay)


def delete(settings: Settings, catalog: Catalog, backup_id: str) -> BackupRecord:
    """Delete a backup's stored pieces and its copies, then mark its row ``deleted`` (kept
    for history).

    Raises:
        NotFound: unknown id.
        StorageError: its storage target cannot be opened.
    """
    record = catalog.get_backup(backup_id)
    remove_stored(storage.resolve(settings, record.storage), record)
    copies.remove_copies(settings, catalog, record)
    record.status = "deleted"
    catalog.save_backup(record)
    return record
