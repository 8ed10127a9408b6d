"""Taking a snapshot of a file set: incremental, deduplicated, parallel, committed last.

The flow of :func:`snapshot` (under the lock ``files:<set>``)::

    row 'running' -> list the source (versions as of ``as_of`` when the bucket is versioned)
    -> merge with the previous manifest: unchanged objects (size, ETag, last-modified; or
       size and mtime) cost their listing entry; others go to a pool of workers
    -> a worker reads the object, hashes it, and stores its blob unless the blob exists
       (:mod:`pgvault.files.copier`: objects up to a third of the memory budget are read
       whole; larger ones are hashed in a first read and streamed to their blob in a
       second, checked, read)
    -> the manifest is written in key order as results come back (never held whole)
    -> index committed, then manifest committed, then row 'completed'.
    on any failure: unfinished writes aborted, row 'failed' (or 'interrupted'); blobs
    already stored stay for the next run to reuse, and retention sweeps the rest.

Consistency with the database (the idea of pgBackRest's "backup from standby" timeline
cut, applied to an object store): a versioned bucket is listed as of ``as_of``, the
moment of the database dump's snapshot, so files match rows exactly (to S3's one-second
resolution); an unversioned one is listed from ``as_of`` on, and the detail says that
objects deleted during the run may be missing.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pgvault import runtime
from pgvault.catalog import Catalog, locks
from pgvault.catalog import files as rows
from pgvault.catalog.files import FileSnapshotRecord, SnapshotTrigger
from pgvault.config.files import FileSetSettings
from pgvault.config.settings import Settings
from pgvault.dumps.encryption import decryptor_from, parse_recipients
from pgvault.errors import ArchiveError, BackupError, Busy, NotFound, PgvaultError
from pgvault.files import sets
from pgvault.files.blobs import StoredBlob, pool_prefix
from pgvault.files.copier import Copier, listed_pool
from pgvault.files.manifest import (
    Entry,
    LinesWriter,
    entries_from,
    index_blobs,
    manifest_header,
    open_entries,
    snapshot_keys,
    write_index,
)
from pgvault.files.places import open_place
from pgvault.files.sources import DirectoryPlace, Place, filtered
from pgvault.files.transfer import Cancelled, Meter, ProgressHook
from pgvault.storage import Storage

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SnapshotRequest:
    """One snapshot: of which set, why, as of when, and (for a restore's safety snapshot)
    of which other place than the set's source."""

    file_set: str
    trigger: SnapshotTrigger = "manual"
    backup_id: str | None = None
    as_of: datetime | None = None
    source: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    created_by: str | None = None


def snapshot(
    settings: Settings,
    catalog: Catalog,
    request: SnapshotRequest,
    *,
    progress: ProgressHook | None = None,
    cancel: threading.Event | None = None,
) -> FileSnapshotRecord:
    """Take a snapshot of a file set and copy it to the set's other targets.

    Returns:
        The completed row (``objects``, ``bytes``, ``copied_objects``, ``copied_bytes``,
        ``stored_blobs``, ``stored_bytes``, ``duration_seconds`` filled in).

    Raises:
        ConfigError: unknown set or bad recipients (nothing recorded).
        Busy: a snapshot or restore of the set is running (nothing recorded).
        StorageError: the source cannot be listed or the target written (nothing recorded).
        BackupError: the run failed after it started; its row is ``failed``.
        Cancelled: ``cancel`` was set; the row is ``interrupted``.
    """
    cfg = sets.settings_of(settings, request.file_set)
    with locks.exclusive(settings, catalog, sets.lock_name(request.file_set)) as got:
        if not got:
            raise Busy(
                f"a snapshot or restore of file set {request.file_set} is running: wait for it"
            )
        record = take_locked(settings, catalog, request, cfg, progress, cancel)
    names = sets.storage_names(settings, cfg)
    if request.source is None and len(names) > 1:
        from pgvault.files import copies

        copies.replicate(settings, catalog, record, names[1:])
    return record


def take_locked(
    settings: Settings,
    catalog: Catalog,
    request: SnapshotRequest,
    cfg: FileSetSettings,
    progress: ProgressHook | None,
    cancel: threading.Event | None,
) -> FileSnapshotRecord:
    """:func:`snapshot` for a caller already holding the set's lock (a restore taking its
    safety snapshot); no copies. Raises as :func:`snapshot`."""
    sets.recover_interrupted(settings, catalog, request.file_set)
    place = open_place(request.source or cfg.source, cfg)
    store = sets.open_target(settings, sets.storage_names(settings, cfg)[0])
    texts = sets.recipients_of(settings, cfg)
    recipients = parse_recipients(texts)
    place.check_readable()
    store.check_writable()
    started = datetime.now(UTC)
    versioned = place.versioned()
    record = _new_record(settings, request, place, store, started, versioned, bool(texts))
    rows.save_snapshot(catalog, record)
    log.info("file snapshot %s of %s started (%s)", record.id, place.url, record.consistency)
    try:
        _take(settings, catalog, record, cfg, place, store, texts, recipients, progress, cancel)
    except BaseException as exc:
        _fail(catalog, store, record, exc)
        if isinstance(exc, PgvaultError) and not isinstance(exc, Cancelled):
            raise BackupError(f"snapshot of file set {record.file_set} failed: {exc}") from exc
        raise
    log.info(
        "file snapshot %s completed: %d objects, %d read, %d new blobs",
        record.id,
        record.objects,
        record.copied_objects,
        record.stored_blobs,
    )
    return record


def _new_record(
    settings: Settings,
    request: SnapshotRequest,
    place: Place,
    store: Storage,
    started: datetime,
    versioned: bool,
    encrypted: bool,
) -> FileSnapshotRecord:
    snapshot_id = sets.new_snapshot_id(started)
    manifest_key, index_key = snapshot_keys(request.file_set, snapshot_id, encrypted)
    if isinstance(place, DirectoryPlace):
        consistency, detail = "directory", "a directory tree as read during the run"
    elif versioned:
        consistency, detail = "versioned", "object versions as of the snapshot point"
    else:
        consistency = "window"
        detail = (
            "the bucket is not versioned: objects as listed from the snapshot point on; "
            "objects deleted during the run may be missing"
        )
    return FileSnapshotRecord(
        id=snapshot_id,
        file_set=request.file_set,
        source=place.url,
        storage=store.name,
        manifest_key=manifest_key,
        index_key=index_key,
        trigger=request.trigger,
        backup_id=request.backup_id,
        environment=settings.environment,
        encrypted=encrypted,
        consistency=consistency,
        as_of=(request.as_of or started).astimezone(UTC),
        detail=detail,
        labels=dict(request.labels),
        started_at=started,
        created_by=request.created_by,
        runner=runtime.runner_id(),
    )


def _take(
    settings: Settings,
    catalog: Catalog,
    record: FileSnapshotRecord,
    cfg: FileSetSettings,
    place: Place,
    store: Storage,
    texts: list[str],
    recipients: list[Any],
    progress: ProgressHook | None,
    cancel: threading.Event | None,
) -> None:
    pool = pool_prefix(record.file_set, texts)
    base = rows.newest_completed(catalog, record.file_set, place.url, store.name)
    previous, known, note = _base(settings, store, base, pool)
    cache = sets.cache_path(settings, record) if texts else None
    writer = LinesWriter(store, record.manifest_key, manifest_header(record), recipients, cache)
    run = Copier(place, store, pool, recipients, cfg, known, Meter("copying", progress), cancel)
    if not known:  # nothing vouched for: one listing instead of a probe per blob
        run.present = listed_pool(store, pool)
    try:
        as_of = record.as_of if record.consistency == "versioned" else None
        run.execute(filtered(place.list(as_of), cfg.exclude), previous, writer)
        record.objects, record.bytes = run.objects, run.bytes
        record.copied_objects, record.copied_bytes = run.read_objects, run.read_bytes
        record.stored_blobs, record.stored_bytes = run.stored_blobs, run.stored_bytes
        notes = [record.detail or "", note]
        if run.vanished:
            notes.append(f"{run.vanished} object(s) vanished while the snapshot ran")
        record.detail = "; ".join(n for n in notes if n)
        record.finished_at = datetime.now(UTC)
        record.duration_seconds = (record.finished_at - record.started_at).total_seconds()
        store.sync()  # every blob durable before the index and manifest name them
        header = record.model_copy(update={"status": "completed"})
        record.index_size, record.index_sha256 = write_index(store, header, run.referenced_blobs())
        record.manifest_size, record.manifest_sha256 = writer.commit()
    except BaseException:
        writer.abort()
        raise
    record.status = "completed"
    rows.save_snapshot(catalog, record)
    if cache is not None:
        sets.prune_cache(settings, record)


def _base(
    settings: Settings, store: Storage, base: FileSnapshotRecord | None, pool: str
) -> tuple[Iterable[Entry], dict[str, StoredBlob], str]:
    """``(previous entries, blobs known to exist, note for the detail)``."""
    if base is None:
        return [], {}, "first snapshot of this source"
    try:
        known = {b.key: b for b in index_blobs(store, base) if b.key.startswith(pool)}
        cache = sets.cache_path(settings, base)
        if not base.encrypted:
            return open_entries(store, base, None), known, f"incremental from {base.id}"
        if cache.is_file():
            return entries_from(open(cache, "rb"), base.id), known, f"incremental from {base.id}"  # noqa: SIM115
        decrypt = decryptor_from(settings.age_identity_file)
        if decrypt is not None:
            return open_entries(store, base, decrypt), known, f"incremental from {base.id}"
        note = (
            f"the manifest of {base.id} is encrypted and not cached here (no identity): "
            "every object was read again (stored blobs were still reused)"
        )
        return [], known, note
    except (ArchiveError, NotFound) as exc:
        log.warning("previous snapshot %s unusable as a base: %s", base.id, exc)
        return [], {}, f"previous snapshot {base.id} unusable ({exc}): every object read again"


def _fail(catalog: Catalog, store: Storage, record: FileSnapshotRecord, exc: BaseException) -> None:
    interrupted = isinstance(exc, KeyboardInterrupt | SystemExit | Cancelled)
    record.status = "interrupted" if interrupted else "failed"
    record.error = str(exc) or type(exc).__name__
    record.finished_at = datetime.now(UTC)
    record.duration_seconds = (record.finished_at - record.started_at).total_seconds()
    for key in (record.manifest_key, record.index_key):
        try:
            store.discard_partial(key)
            store.delete(key)
        except PgvaultError as err:
            log.warning("could not remove %s: %s", key, err)
    try:
        rows.save_snapshot(catalog, record)
    except PgvaultError:
        log.exception("could not record the failure of file snapshot %s", record.id)
