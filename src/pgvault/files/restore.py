"""Restoring a file snapshot into an S3 prefix or a directory, without losing anything.

:func:`plan` (``--dry-run``) and :func:`run` walk the manifest and the destination's
listing together (key order, one pass) and decide per key: **add** (missing there),
**change** (different size, ETag, content type, metadata or headers; for a directory
size, mtime or mode), **unchanged**, **delete** (only with ``delete_extra``) or **kept**.

Safety (the rule "a restore never leaves you with less than you had"):

* nothing at the destination the snapshot does not hold is deleted unless
  ``delete_extra``, and then only after every object was written;
* before anything is overwritten or deleted, a *safety snapshot* of the destination is
  taken (trigger ``pre-restore``) and named in the result: restoring it undoes the restore;
* every object's content is checked against its sha256 as it streams, and an object is
  only made visible (multipart completed, file renamed) once it matched.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Literal

from pgvault.catalog import Catalog, locks
from pgvault.catalog import files as rows
from pgvault.catalog.files import FileSnapshotRecord
from pgvault.config.files import FileSetSettings
from pgvault.config.settings import Settings
from pgvault.dumps.layers import DecryptHook
from pgvault.errors import Busy, PgvaultError, RestoreError
from pgvault.files import sets
from pgvault.files.blobs import CHUNK, open_content
from pgvault.files.manifest import Entry, open_entries
from pgvault.files.places import open_place
from pgvault.files.plan import RestoreCounts, restore_actions, same_attributes, same_content
from pgvault.files.snapshot import SnapshotRequest, take_locked
from pgvault.files.sources import Attributes, DirectoryPlace, Listed, Place, filtered
from pgvault.files.transfer import (
    Budget,
    Meter,
    MiB,
    ProgressHook,
    cancel_pending,
    check_cancel,
    drain_in_order,
    quick_switching,
    tune_allocator,
)
from pgvault.storage import Storage

log = logging.getLogger(__name__)

WINDOW = 256
"""Decisions or transfers in flight ahead of the one awaited."""

Decision = Literal["add", "change", "unchanged", "delete", "kept"]


@dataclass(frozen=True)
class FileRestoreRequest:
    """One restore of a snapshot.

    Attributes:
        to: destination URL (``s3://bucket/prefix`` or a directory); default: where the
            snapshot was taken from. S3 options (endpoint, credentials) are the set's.
        delete_extra: also delete what the snapshot does not hold (after a safety snapshot).
        safety: ``auto`` takes a safety snapshot when something would be overwritten or
            deleted; ``always`` whenever the destination holds anything; ``never`` is for
            undoing a restore from its own safety snapshot.
        decrypt: turns age ciphertext into plaintext (encrypted snapshots).
    """

    snapshot_id: str
    to: str | None = None
    delete_extra: bool = False
    safety: Literal["auto", "always", "never"] = "auto"
    decrypt: DecryptHook | None = None
    created_by: str | None = None


@dataclass
class FileRestoreResult:
    """What a restore did. Bytes are object bytes; ``duration_seconds`` wall time."""

    snapshot_id: str
    destination: str
    restored_objects: int = 0
    restored_bytes: int = 0
    skipped_unchanged: int = 0
    deleted_extra: int = 0
    kept_extra: int = 0
    safety_snapshot_id: str | None = None
    duration_seconds: float = 0.0
    plan: RestoreCounts | None = field(default=None, repr=False)


class _Context:
    """The parts one restore works with."""

    def __init__(self, settings: Settings, catalog: Catalog, request: FileRestoreRequest) -> None:
        self.record = rows.get_snapshot(catalog, request.snapshot_id)
        if self.record.status != "completed":
            raise RestoreError(
                f"file snapshot {self.record.id} is {self.record.status}, not completed: "
                "choose another one ('pgvault files list')"
            )
        self.cfg: FileSetSettings = sets.settings_of(settings, self.record.file_set)
        self.store: Storage = sets.open_target(settings, self.record.storage)
        self.destination: Place = open_place(request.to or self.record.source, self.cfg)
        self.directory = isinstance(self.destination, DirectoryPlace)
        self.request = request
        self.budget = Budget(self.cfg.memory_mib * MiB)

    def entries(self) -> Iterator[Entry]:
        return open_entries(self.store, self.record, self.request.decrypt)

    def current(self) -> Iterator[Listed]:
        destination = self.destination
        if isinstance(destination, DirectoryPlace) and not destination.root.exists():
            return iter(())  # a directory to be created holds nothing yet
        return filtered(destination.list(), self.cfg.exclude)

    def decide_check(self, entry: Entry, listed: Listed) -> Decision:
        """``unchanged`` or ``change`` for a key on both sides (one HEAD on S3)."""
        quick = same_content(entry, listed)
        if quick is False:
            return "change"
        if self.directory:
            found = Attributes(mtime_ns=listed.mtime_ns, mode=listed.mode)
        else:
            head = self.destination.head(entry.key)
            if head is None:
                return "change"
            found = head
        return "unchanged" if same_attributes(entry, found, self.directory) else "change"


def _decisions(
    ctx: _Context, pool: ThreadPoolExecutor, cancel: threading.Event | None
) -> Iterator[tuple[Decision, Entry | None, Listed | None]]:
    """Every key's decision, in key order (S3 attribute checks run in ``pool``)."""
    pending: deque[
        Future[tuple[Decision, Entry | None, Listed | None]]
        | tuple[Decision, Entry | None, Listed | None]
    ] = deque()

    def check(entry: Entry, listed: Listed) -> tuple[Decision, Entry | None, Listed | None]:
        return ctx.decide_check(entry, listed), entry, listed

    def waiting() -> None:
        check_cancel(cancel)

    try:
        for action, entry, listed in restore_actions(ctx.entries(), ctx.current()):
            check_cancel(cancel)
            if action == "add":
                pending.append(("add", entry, None))
            elif action == "extra":
                pending.append(("delete" if ctx.request.delete_extra else "kept", None, listed))
            else:
                assert entry is not None and listed is not None
                pending.append(pool.submit(check, entry, listed))
            yield from drain_in_order(pending, WINDOW, waiting)
        yield from drain_in_order(pending, 0, waiting)
    finally:
        cancel_pending(pending)


def _survey(ctx: _Context, cancel: threading.Event | None) -> RestoreCounts:
    counts = RestoreCounts(snapshot_id=ctx.record.id, destination=ctx.destination.url)
    with ThreadPoolExecutor(ctx.cfg.workers, thread_name_prefix="pgvault-restore") as pool:
        for decision, entry, listed in _decisions(ctx, pool, cancel):
            key = entry.key if entry is not None else listed.key if listed is not None else ""
            counts.count(decision, key, entry.size if entry is not None else 0)
    safety = ctx.request.safety
    present = counts.to_change + counts.unchanged + counts.to_delete + counts.extra_kept
    counts.safety_snapshot = (safety == "auto" and bool(counts.to_change or counts.to_delete)) or (
        safety == "always" and present > 0
    )
    return counts


def plan(settings: Settings, catalog: Catalog, request: FileRestoreRequest) -> RestoreCounts:
    """What :func:`run` would do, changing nothing: counts, bytes, the first keys of each
    action, whether a safety snapshot comes first.

    Raises:
        NotFound: unknown snapshot.
        RestoreError: the snapshot is not completed.
        ArchiveError: the manifest is damaged, or encrypted and no identity.
        StorageError: the destination cannot be listed.
    """
    return _survey(_Context(settings, catalog, request), None)


def run(
    settings: Settings,
    catalog: Catalog,
    request: FileRestoreRequest,
    *,
    progress: ProgressHook | None = None,
    cancel: threading.Event | None = None,
) -> FileRestoreResult:
    """Restore a snapshot (see the module docstring for the safety rules), under the set's
    lock.

    Raises:
        Busy: a snapshot or restore of the set is running.
        NotFound, ArchiveError, StorageError: as for :func:`plan` (nothing changed).
        RestoreError: the restore failed midway; the message names the safety snapshot that
            holds the destination as it was.
    """
    ctx = _Context(settings, catalog, request)
    with locks.exclusive(settings, catalog, sets.lock_name(ctx.record.file_set)) as got:
        if not got:
            raise Busy(f"a snapshot or restore of file set {ctx.record.file_set} is running")
        return _run_locked(settings, catalog, ctx, progress, cancel)


def _run_locked(
    settings: Settings,
    catalog: Catalog,
    ctx: _Context,
    progress: ProgressHook | None,
    cancel: threading.Event | None,
) -> FileRestoreResult:
    started = time.monotonic()
    counts = _survey(ctx, cancel)
    result = FileRestoreResult(ctx.record.id, ctx.destination.url, plan=counts)
    if counts.safety_snapshot:
        safety = take_locked(
            settings,
            catalog,
            SnapshotRequest(
                file_set=ctx.record.file_set,
                trigger="pre-restore",
                source=ctx.destination.url,
                labels={"restore_of": ctx.record.id},
                created_by=ctx.request.created_by,
            ),
            ctx.cfg,
            None,
            cancel,
        )
        result.safety_snapshot_id = safety.id
    meter = Meter("restoring", progress)
    meter.add_total(counts.to_add + counts.to_change, counts.add_bytes + counts.change_bytes)
    meter.listing_finished()
    try:
        _apply(ctx, result, meter, cancel)
    except PgvaultError as exc:
        undo = (
            f"; safety snapshot {result.safety_snapshot_id} holds it as it was"
            if result.safety_snapshot_id
            else ""
        )
        raise RestoreError(
            f"restore of file snapshot {ctx.record.id} into {ctx.destination.url} failed after "
            f"{result.restored_objects} object(s): {exc}{undo}"
        ) from exc
    result.duration_seconds = time.monotonic() - started
    log.info(
        "file snapshot %s restored into %s: %d written, %d unchanged, %d deleted",
        ctx.record.id,
        ctx.destination.url,
        result.restored_objects,
        result.skipped_unchanged,
        result.deleted_extra,
    )
    return result


def _apply(
    ctx: _Context, result: FileRestoreResult, meter: Meter, cancel: threading.Event | None
) -> None:
    extras: list[str] = []
    stop = threading.Event()
    lock = threading.Lock()

    def write(entry: Entry) -> None:
        _restore_object(ctx, entry, cancel, stop)
        with lock:
            result.restored_objects += 1
            result.restored_bytes += entry.size
        meter.add_done(1, entry.size)

    def waiting() -> None:
        check_cancel(cancel)
        meter.report()

    pending: deque[Future[None] | None] = deque()
    tune_allocator()
    with (
        quick_switching(),
        ThreadPoolExecutor(ctx.cfg.workers, thread_name_prefix="pgvault-restore") as pool,
    ):
        try:
            for decision, entry, listed in _decisions(ctx, pool, cancel):
                if decision in ("add", "change"):
                    assert entry is not None
                    pending.append(pool.submit(write, entry))
                elif decision == "unchanged":
                    result.skipped_unchanged += 1
                elif decision == "delete":
                    assert listed is not None
                    extras.append(listed.key)
                else:
                    result.kept_extra += 1
                for _done in drain_in_order(pending, WINDOW, waiting):
                    pass
            for _done in drain_in_order(pending, 0, waiting):
                pass
        except BaseException:
            stop.set()
            cancel_pending(pending)
            raise
    meter.report(force=True)
    for key in extras:  # only once every object of the snapshot is in place
        check_cancel(cancel)
        ctx.destination.delete(key)
        result.deleted_extra += 1


def _restore_object(
    ctx: _Context, entry: Entry, cancel: threading.Event | None, stop: threading.Event
) -> None:
    """Stream one object from its blob into the destination, visible only once its sha256
    matched."""
    check_cancel(cancel, stop)
    reserve = min(entry.size, int(getattr(ctx.destination, "part_size", 0))) + 2 * MiB
    attributes = Attributes(
        content_type=entry.content_type,
        metadata=entry.metadata,
        headers=entry.headers,
        mtime_ns=entry.mtime_ns,
        mode=entry.mode,
    )
    with ctx.budget.hold(reserve):
        writer = ctx.destination.open_write(entry.key, attributes)
        try:
            with open_content(ctx.store, entry.blob, ctx.request.decrypt, entry.size) as content:
                while chunk := content.read(CHUNK):
                    check_cancel(cancel, stop)
                    writer.write(chunk)
            writer.commit()
        except BaseException:
            writer.abort()
            raise


def describe(record: FileSnapshotRecord) -> str:
    """``fs-... of images (2026-11-21 05:30:12Z)`` for messages."""
    return f"{record.id} of {record.file_set} ({record.started_at:%Y-%m-%d %H:%M:%S}Z)"
