"""Taking a snapshot of a file set: incremental, deduplicated, parallel, committed last.

The flow of :func:`snapshot` (under the lock ``files:<set>``)::

    row 'running' -> list the source (versions as of ``as_of`` when the bucket is versioned)
    -> merge with the previous manifest: unchanged objects (size, ETag, last-modified; or
       size and mtime) cost their listing entry; others go to a pool of workers
    -> a worker reads the object, hashes it, and stores its blob unless the blob exists
       (objects up to a quarter of the memory budget are read whole; larger ones are
       hashed in a first read and streamed to their blob in a second, checked, read)
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

import hashlib
import logging
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import IO, Any

from pgvault.catalog import Catalog, locks
from pgvault.catalog import files as rows
from pgvault.catalog.files import FileSnapshotRecord, SnapshotTrigger
from pgvault.config.files import FileSetSettings
from pgvault.config.settings import Settings
from pgvault.dumps.encryption import decryptor_from, parse_recipients
from pgvault.errors import ArchiveError, BackupError, Busy, NotFound, PgvaultError, StorageError
from pgvault.files import sets
from pgvault.files.blobs import (
    CHUNK,
    BlobWriter,
    StoredBlob,
    VerifiedReader,
    blob_key,
    choose_form,
    open_content,
    pool_prefix,
    store_bytes,
)
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
from pgvault.files.plan import merge, reuse, unchanged
from pgvault.files.sources import (
    Changed,
    DirectoryPlace,
    Listed,
    Opened,
    Place,
    filtered,
    open_place,
)
from pgvault.files.transfer import (
    Budget,
    Cancelled,
    Meter,
    MiB,
    ProgressHook,
    cancel_pending,
    check_cancel,
    drain_in_order,
    quick_switching,
    tune_allocator,
)
from pgvault.storage import ObjectInfo, Storage

log = logging.getLogger(__name__)

LOOKAHEAD = 10_000
"""Listed objects held ahead of the manifest writer (metadata only: a few MiB)."""
READ_ATTEMPTS = 3
POOL_LISTING_LIMIT = 100_000
"""Blobs listed at most instead of probed one by one when no previous snapshot vouches."""


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
        runner=sets.runner_id(),
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
    run = _Run(place, store, pool, recipients, cfg, known, Meter("copying", progress), cancel)
    if not known:  # nothing vouched for: one listing instead of a probe per blob
        run.present = _listed_pool(store, pool)
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


def _listed_pool(store: Storage, pool: str) -> dict[str, ObjectInfo] | None:
    """The blobs stored in ``pool``, or None when there are more than
    :data:`POOL_LISTING_LIMIT` (then each blob is probed on its own)."""
    found: dict[str, ObjectInfo] = {}
    for info in store.list(pool):
        if len(found) >= POOL_LISTING_LIMIT:
            return None
        found[info.key] = info
    return found


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


class _Run:
    """One snapshot's transfer: the merge, the worker pool, the ordered manifest."""

    def __init__(
        self,
        place: Place,
        store: Storage,
        pool: str,
        recipients: list[Any],
        cfg: FileSetSettings,
        known: dict[str, StoredBlob],
        meter: Meter,
        cancel: threading.Event | None,
    ) -> None:
        self.place, self.store, self.pool = place, store, pool
        self.recipients = recipients
        self.workers = cfg.workers
        self.budget = Budget(cfg.memory_mib * MiB)
        self.small_limit = self.budget.total // 3
        self.stream_reserve = int(getattr(store, "part_size", 0)) + 2 * MiB
        self.fresh_after = datetime.now(UTC) - timedelta(hours=cfg.blob_grace_hours / 2)
        self.known = known
        self.meter = meter
        self.cancel = cancel
        self.stop = threading.Event()
        self._lock = threading.Lock()
        self._busy: dict[str, threading.Event] = {}
        self._referenced: dict[str, StoredBlob] = {}
        self.present: dict[str, ObjectInfo] | None = None  # the pool as listed at the start
        self.objects = self.bytes = self.vanished = 0
        self.read_objects = self.read_bytes = self.stored_blobs = self.stored_bytes = 0

    # --- the main thread: merge, submit, write in order ---------------------------------

    def execute(
        self, listing: Iterator[Listed], previous: Iterable[Entry], writer: LinesWriter
    ) -> None:
        """Run the whole transfer; entries go to ``writer`` in key order.

        Raises:
            Cancelled, StorageError, ArchiveError: the first error of any worker.
        """
        pending: deque[Future[Entry | None] | Entry | None] = deque()
        tune_allocator()
        with (
            quick_switching(),
            ThreadPoolExecutor(self.workers, thread_name_prefix="pgvault-files") as pool,
        ):
            try:
                for item, prev in merge(listing, previous):
                    if item is None:
                        continue  # deleted since the previous snapshot
                    check_cancel(self.cancel)
                    if prev is not None and unchanged(item, prev, self.pool):
                        pending.append(reuse(item, prev))
                    else:
                        self.meter.add_total(1, item.size)
                        pending.append(pool.submit(self._copy, item))
                    self._drain(pending, writer, LOOKAHEAD)
                self.meter.listing_finished()
                self._drain(pending, writer, 0)
            except BaseException:
                self.stop.set()
                cancel_pending(pending)
                raise
        self.meter.report(force=True)

    def _drain(
        self, pending: deque[Future[Entry | None] | Entry | None], writer: LinesWriter, keep: int
    ) -> None:
        for entry in drain_in_order(pending, keep, self._waiting):
            if entry is not None:
                self._emit(entry, writer)

    def _waiting(self) -> None:
        check_cancel(self.cancel)
        self.meter.report()

    def _emit(self, entry: Entry, writer: LinesWriter) -> None:
        writer.write_line(entry.to_json())
        self.objects += 1
        self.bytes += entry.size
        if entry.blob not in self._referenced:
            self._referenced[entry.blob] = StoredBlob(
                entry.blob, int(entry.stored_size or 0), entry.stored_sha256
            )
        self.meter.report()

    def referenced_blobs(self) -> Iterator[StoredBlob]:
        """The distinct blobs of the snapshot, for its index."""
        return iter(self._referenced.values())

    # --- workers -------------------------------------------------------------------------

    def _copy(self, item: Listed) -> Entry | None:
        check_cancel(self.cancel, self.stop)
        small = item.size <= self.small_limit
        factor = 3 if self.recipients else 2
        with self.budget.hold(factor * item.size if small else self.stream_reserve):
            for _attempt in range(READ_ATTEMPTS):
                try:
                    entry = self._copy_small(item) if small else self._copy_large(item)
                except Changed as exc:
                    log.info("%s changed while read; reading it again", exc)
                    continue
                except NotFound:
                    with self._lock:
                        self.vanished += 1
                    return None
                with self._lock:
                    self.read_objects += 1
                    self.read_bytes += entry.size
                self.meter.add_done(1, entry.size)
                return entry
        raise StorageError(f"{item.key!r} kept changing while it was read: snapshot again later")

    def _copy_small(self, item: Listed) -> Entry:
        opened = self.place.open(item)
        with opened.stream as stream:
            if opened.size > self.small_limit:  # it grew since the listing
                return self._copy_large(item)
            data = _read_whole(stream, opened.size)
        sha = hashlib.sha256(data).hexdigest()
        key = blob_key(self.pool, sha, choose_form(data[:64]), bool(self.recipients))
        blob = self._ensure(key, lambda: store_bytes(self.store, key, data, self.recipients))
        return _entry(item, opened, sha, len(data), blob)

    def _copy_large(self, item: Listed) -> Entry:
        opened = self.place.open(item)
        digest, size, head = hashlib.sha256(), 0, b""
        with opened.stream as stream:
            while chunk := stream.read(CHUNK):
                check_cancel(self.cancel, self.stop)
                if not head:
                    head = chunk[:64]
                digest.update(chunk)
                size += len(chunk)
        sha = digest.hexdigest()
        key = blob_key(self.pool, sha, choose_form(head), bool(self.recipients))
        pinned = Listed(
            item.key,
            size,
            opened.modified,
            opened.etag,
            opened.version_id or item.version_id,
            opened.mtime_ns,
            opened.mode,
        )
        blob = self._ensure(key, lambda: self._stream_blob(pinned, key, sha))
        return _entry(item, opened, sha, size, blob)

    def _stream_blob(self, pinned: Listed, key: str, sha: str) -> StoredBlob:
        """The second read of a large object, straight into its blob, proven equal to the
        first read before the blob is committed."""
        second = self.place.open(pinned, if_match=True)
        writer = BlobWriter(self.store, key, self.recipients)
        try:
            with VerifiedReader(second.stream, sha, pinned.size, pinned.key) as checked:
                while chunk := checked.read(CHUNK):
                    check_cancel(self.cancel, self.stop)
                    writer.write(chunk)
            return writer.commit_blob()
        except ArchiveError as exc:
            writer.abort()
            raise Changed(f"{pinned.key!r} changed between its two reads") from exc
        except BaseException:
            writer.abort()
            raise

    def _ensure(self, key: str, upload: Callable[[], StoredBlob]) -> StoredBlob:
        """The blob ``key``: known, found fresh in storage, or uploaded now (once, even when
        several workers meet the same content at once)."""
        with self._lock:
            found = self.known.get(key)
            if found is not None:
                return found
            event = self._busy.get(key)
            owner = event is None
            if owner:
                event = self._busy[key] = threading.Event()
        assert event is not None
        if not owner:
            event.wait()
            with self._lock:
                found = self.known.get(key)
            if found is not None:
                return found
        try:
            blob = self._stored_fresh(key)
            if blob is None:
                blob = upload()
                with self._lock:
                    self.stored_blobs += 1
                    self.stored_bytes += blob.stored_size
            with self._lock:
                self.known[key] = blob
            return blob
        finally:
            if owner:
                with self._lock:
                    self._busy.pop(key, None)
                event.set()

    def _stored_fresh(self, key: str) -> StoredBlob | None:
        """A stored blob no kept snapshot vouches for (left by a killed run, say), reused
        only when it is younger than half the grace period (so no sweep can remove it
        before this snapshot commits) and its content reads back whole and matches its
        name (it may never have been flushed); otherwise it is written again. Encrypted
        ones cannot be read back without the identity: they are written again."""
        info = self.present.get(key) if self.present is not None else self.store.stat(key)
        if info is None or info.modified < self.fresh_after or self.recipients:
            return None
        try:
            with open_content(self.store, key, None) as stream:
                while stream.read(CHUNK):
                    pass
        except (ArchiveError, StorageError, NotFound) as exc:
            log.warning("stored blob %s is unusable (%s): writing it again", key, exc)
            return None
        return StoredBlob(key, info.size, None)


def _read_whole(stream: IO[bytes], size: int) -> bytes:
    """Read an object of ``size`` bytes in one allocation (no chunks joined).

    Raises:
        Changed: it holds more or fewer bytes than its length said.
    """
    data = stream.read(size) if size else b""
    while len(data) < size:  # a short read: rare, joined once
        more = stream.read(size - len(data))
        if not more:
            raise Changed(f"an object ended after {len(data)} of {size} bytes")
        data += more
    if stream.read(1):
        raise Changed(f"an object holds more than its {size} bytes")
    return data


def _entry(item: Listed, opened: Opened, sha: str, size: int, blob: StoredBlob) -> Entry:
    same = opened.etag is not None and opened.etag == item.etag
    return Entry(
        key=item.key,
        size=size,
        sha256=sha,
        blob=blob.key,
        # the listing's own values, so the next snapshot's comparison with its listing holds
        modified=item.modified if same else opened.modified,
        stored_size=blob.stored_size,
        stored_sha256=blob.stored_sha256,
        content_type=opened.content_type,
        metadata=opened.metadata,
        headers=opened.headers,
        etag=opened.etag,
        version_id=opened.version_id or item.version_id,
        mode=opened.mode,
        mtime_ns=opened.mtime_ns,
    )
