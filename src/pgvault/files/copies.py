"""Copies of file snapshots on a set's other storage targets (3-2-1, as for databases).

A copy sends the stored bytes as they are (already compressed and encrypted): the blobs the
target lacks (one listing of its pools tells), then the index, then the manifest, each
checked against its recorded size and sha256 before it is committed there. Each target has
its own blobs, so a copy costs only what that target misses. One row per target in
``file_snapshot_copies``; a failed copy never fails the snapshot.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime

from pgvault.catalog import Catalog
from pgvault.catalog import files as rows
from pgvault.catalog.files import FileSnapshotCopy, FileSnapshotRecord
from pgvault.config.settings import Settings
from pgvault.dumps.layers import HashingReader
from pgvault.errors import ArchiveError, PgvaultError
from pgvault.files import sets
from pgvault.files.blobs import CHUNK, set_root
from pgvault.files.manifest import index_blobs
from pgvault.storage import Storage

log = logging.getLogger(__name__)


def replicate(
    settings: Settings, catalog: Catalog, record: FileSnapshotRecord, targets: Sequence[str]
) -> list[FileSnapshotCopy]:
    """Copy a completed snapshot to each of ``targets`` (names or URLs); never raises.

    Returns:
        One row per target, ``completed`` or ``failed`` (with its error).
    """
    done = []
    for name in targets:
        copy = FileSnapshotCopy(snapshot_id=record.id, storage=name, status="failed")
        try:
            source = sets.open_target(settings, record.storage)
            target = sets.open_target(settings, name)
            copy.copied_blobs, copy.copied_bytes = copy_snapshot(source, target, record)
            copy.status, copy.copied_at = "completed", datetime.now(UTC)
        except PgvaultError as exc:
            copy.error = str(exc)
            log.warning("copy of file snapshot %s to %s failed: %s", record.id, name, exc)
        rows.save_copy(catalog, copy)
        done.append(copy)
    return done


def _send(source: Storage, target: Storage, key: str, size: int | None, sha: str | None) -> int:
    writer = target.open_batch_write(key)
    try:
        with source.open_read(key) as raw:
            hashing = HashingReader(raw)
            while chunk := hashing.read(CHUNK):
                writer.write(chunk)
        if (size is not None and hashing.size != size) or (sha and hashing.sha256 != sha):
            raise ArchiveError(f"stored object {key} does not match its record: not copied")
        writer.commit()
    except BaseException:
        writer.abort()
        raise
    return hashing.size


def copy_snapshot(source: Storage, target: Storage, record: FileSnapshotRecord) -> tuple[int, int]:
    """Send what ``target`` lacks of ``record``; returns ``(blobs, bytes)`` sent.

    Raises:
        StorageError: a target failed.
        ArchiveError: a stored object differs from its record (nothing of it is copied).
    """
    target.check_writable()
    present = {i.key: i.size for i in target.list(set_root(record.file_set) + "blobs")}
    blobs = sent = 0
    for blob in index_blobs(source, record):
        if present.get(blob.key) == blob.stored_size:
            continue
        sent += _send(source, target, blob.key, blob.stored_size, blob.stored_sha256)
        blobs += 1
    target.sync()
    _send(source, target, record.index_key, record.index_size, record.index_sha256)
    _send(source, target, record.manifest_key, record.manifest_size, record.manifest_sha256)
    target.sync()
    log.info(
        "file snapshot %s copied to %s: %d blobs, %d bytes", record.id, target.name, blobs, sent
    )
    return blobs, sent
