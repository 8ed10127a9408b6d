"""The transfer of one snapshot: the listing merged with the previous manifest, changed
objects read by a pool of workers into their blobs, entries written to the manifest in
key order as results come back (see :mod:`pgvault.files.snapshot` for the whole flow).

Memory is bounded by a :class:`~pgvault.files.transfer.Budget`: an object up to a third of
it is read whole (one allocation) and hashed; a larger one is hashed in a first read and,
if its blob is missing, streamed into it by a second read that must match the first.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import IO, Any

from pgvault.config.files import FileSetSettings
from pgvault.errors import ArchiveError, NotFound, StorageError
from pgvault.files.blobs import (
    CHUNK,
    BlobWriter,
    StoredBlob,
    VerifiedReader,
    blob_key,
    choose_form,
    open_content,
    store_bytes,
)
from pgvault.files.manifest import Entry, LinesWriter
from pgvault.files.plan import merge, reuse, unchanged
from pgvault.files.sources import Changed, Listed, Opened, Place
from pgvault.files.transfer import (
    Budget,
    Meter,
    MiB,
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
STREAM_FROM = 1 * MiB
"""Objects read whole (up to a third of the memory budget) but larger than this are
compressed and encrypted into their blob as a stream: they reserve their own size (plus
:data:`STREAM_SLACK`), not two or three times it, so several large ones are read at once."""
STREAM_SLACK = 2 * MiB
POOL_LISTING_LIMIT = 100_000
"""Blobs listed at most instead of probed one by one when no previous snapshot vouches."""


def listed_pool(store: Storage, pool: str) -> dict[str, ObjectInfo] | None:
    """The blobs stored in ``pool``, or None when there are more than
    :data:`POOL_LISTING_LIMIT` (then each blob is probed on its own)."""
    found: dict[str, ObjectInfo] = {}
    for info in store.list(pool):
        if len(found) >= POOL_LISTING_LIMIT:
            return None
        found[info.key] = info
    return found


class Copier:
    """One snapshot's transfer: the merge, the worker pool, the ordered manifest.

    Attributes (after :meth:`execute`): ``objects``/``bytes`` in the snapshot,
    ``read_objects``/``read_bytes`` read from the source, ``stored_blobs``/``stored_bytes``
    written, ``vanished`` objects gone between listing and read; ``present``: the pool as
    listed at the start (None: probe each blob).
    """

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

    def _reserve(self, item: Listed) -> int:
        """Bytes of the budget a copy of ``item`` holds: a stream's parts (large), its size
        and a stream's slack (read whole, stored as a stream), or its size with room for
        the compressed and the encrypted copies (small)."""
        if item.size > self.small_limit:
            return self.stream_reserve
        if item.size > STREAM_FROM:
            return item.size + STREAM_SLACK
        return (3 if self.recipients else 2) * item.size

    def _copy(self, item: Listed) -> Entry | None:
        check_cancel(self.cancel, self.stop)
        small = item.size <= self.small_limit
        with self.budget.hold(self._reserve(item)):
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
        if len(data) > STREAM_FROM:  # as _reserve counted: compressed as a stream
            blob = self._ensure(key, lambda: self._stream_bytes(key, data))
        else:
            blob = self._ensure(key, lambda: store_bytes(self.store, key, data, self.recipients))
        return _entry(item, opened, sha, len(data), blob)

    def _stream_bytes(self, key: str, data: bytes) -> StoredBlob:
        """Content held in memory, compressed (and encrypted) into its blob ``key`` a chunk
        at a time, so only the stream's buffers come on top of ``data``."""
        view = memoryview(data)
        return self._pour(key, (bytes(view[at : at + CHUNK]) for at in range(0, len(view), CHUNK)))

    def _pour(self, key: str, chunks: Iterable[bytes]) -> StoredBlob:
        """``chunks`` compressed (and encrypted) into the blob ``key`` as they come and
        committed after the last; on any error (a cancellation, a failed check of the
        source raised by ``chunks``) the blob is aborted and the error propagates."""
        writer = BlobWriter(self.store, key, self.recipients)
        try:
            for chunk in chunks:
                check_cancel(self.cancel, self.stop)
                writer.write(chunk)
            return writer.commit_blob()
        except BaseException:
            writer.abort()
            raise

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
        first read before the blob is committed (the reader checks at its last read)."""
        second = self.place.open(pinned, if_match=True)
        try:
            with VerifiedReader(second.stream, sha, pinned.size, pinned.key) as checked:
                return self._pour(key, iter(partial(checked.read, CHUNK), b""))
        except ArchiveError as exc:
            raise Changed(f"{pinned.key!r} changed between its two reads") from exc

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
