"""Recording a stored object as a backup: the one way a catalog row goes from ``running`` to
``completed`` (pg_dump backups and uploads alike), and the repair of rows whose process died.

A row is ``completed`` only after the object was committed and checked, its manifest (the
row itself, as JSON) is stored beside it and the row is saved; any failure marks it ``failed``
(``interrupted`` for a cancellation or a signal) and removes every stored piece.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from pgvault import runtime, storage
from pgvault.backups.delete import remove_stored
from pgvault.catalog import Catalog
from pgvault.catalog.records import BackupRecord
from pgvault.config.settings import Settings
from pgvault.errors import Cancelled, PgvaultError
from pgvault.storage import Storage

log = logging.getLogger(__name__)


@contextmanager
def recording(
    catalog: Catalog,
    store: Storage,
    record: BackupRecord,
    *,
    discard_on: tuple[type[BaseException], ...] = (),
) -> Iterator[BackupRecord]:
    """Add ``record`` as ``running``; when the block ends, complete or fail it.

    The block stores the object and fills in what it learnt (size, sha256, counts). On a
    normal exit the row becomes ``completed`` with ``finished_at`` and ``duration_seconds``,
    and its manifest is written before the row is saved. On an exception the row becomes
    ``failed`` (``interrupted`` for :class:`Cancelled`, ``KeyboardInterrupt``,
    ``SystemExit``), the stored pieces are removed, and the exception propagates. An
    exception of ``discard_on`` (an upload that is not a whole dump: it never was a backup)
    removes the stored pieces and the row itself.

    Raises:
        CatalogError: the row cannot be added (nothing stored yet).
    """
    catalog.add_backup(record)
    try:
        yield record
        record.status = "completed"
        _finish(record)
        store.write_bytes(record.manifest_key, record.model_dump_json(indent=2).encode())
        catalog.save_backup(record)
    except discard_on:
        try:
            store.discard_partial(record.storage_key)
            if store.stat(record.storage_key) is not None:  # refused after its commit
                remove_stored(store, record)
        except PgvaultError as exc:
            log.warning("partial upload of %s not removed yet: %s", record.id, exc)
        catalog.forget_backup(record.id)
        raise
    except BaseException as exc:
        fail(catalog, store, record, exc)
        raise


def _finish(record: BackupRecord) -> None:
    record.finished_at = runtime.now()
    record.duration_seconds = (record.finished_at - record.started_at).total_seconds()


def fail(catalog: Catalog, store: Storage, record: BackupRecord, exc: BaseException) -> None:
    """Mark ``record`` failed (or interrupted) with ``exc``'s one line, remove its stored
    pieces, and save the row; a catalog error here is logged, not raised."""
    interrupted = isinstance(exc, KeyboardInterrupt | SystemExit | Cancelled)
    record.status = "interrupted" if interrupted else "failed"
    record.error = str(exc) or type(exc).__name__
    _finish(record)
    remove_stored(store, record)
    try:
        catalog.save_backup(record)
    except PgvaultError:
        log.exception("could not record the failure of backup %s", record.id)
    log.info("backup %s %s: %s", record.id, record.status, record.error)  # the caller reports it


def recover_interrupted(settings: Settings, catalog: Catalog) -> list[BackupRecord]:
    """Mark ``interrupted`` the backups left ``running`` by a dead process of this host, and
    remove their partial files. Runs at every start; rows of other hosts are left alone."""
    recovered = []
    for record in catalog.running_backups():
        if not runtime.runner_is_dead(record.runner, record.started_at):
            continue
        record.status = "interrupted"
        record.error = "the pgvault process running this backup died"
        record.finished_at = runtime.now()
        try:
            remove_stored(storage.resolve(settings, record.storage), record)
        except PgvaultError as exc:
            log.warning("partial files of %s not removed: %s", record.id, exc)
        catalog.save_backup(record)
        recovered.append(record)
        log.warning("backup %s was interrupted (its process died); marked interrupted", record.id)
    return recovered
