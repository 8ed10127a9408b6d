"""Verifying a file snapshot in storage.

* default: the index and manifest match the catalog (size, sha256), and every blob the
  index names exists with its recorded stored size (one listing of the pools, no reads);
* ``full``: every blob is also read whole: its stored bytes against their recorded sha256
  and, when it can be decoded (not encrypted, or an identity given), its content against
  the sha256 its name carries.

The outcome is recorded on the row (``verified_at``, ``verify_status``, ``verify_detail``),
in the manner of ``pgvault verify`` for database backups.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime

from pgvault.catalog import Catalog
from pgvault.catalog import files as rows
from pgvault.config.settings import Settings
from pgvault.dumps.layers import DecryptHook
from pgvault.errors import ArchiveError, NotFound, PgvaultError, VerifyError
from pgvault.files import sets
from pgvault.files.blobs import (
    CHUNK,
    StoredBlob,
    hash_stored,
    open_content,
    parse_blob_key,
    set_root,
)
from pgvault.files.manifest import check_stored, index_blobs
from pgvault.storage import Storage

log = logging.getLogger(__name__)

SHOWN_PROBLEMS = 5


@dataclass(frozen=True)
class FileVerifyResult:
    """``ok``; ``blobs`` checked; ``bytes`` read (full only); ``content_checked`` blobs
    decoded and re-hashed; ``detail`` one line."""

    snapshot_id: str
    ok: bool
    full: bool
    blobs: int
    bytes: int
    content_checked: int
    detail: str


def _check_blob(store: Storage, blob: StoredBlob, decrypt: DecryptHook | None) -> tuple[int, bool]:
    """Read one blob whole; returns ``(stored bytes, content checked)``.

    Raises:
        ArchiveError: its stored or content sha256 differs.
    """
    size, sha = hash_stored(store, blob.key)
    if size != blob.stored_size or (blob.stored_sha256 and sha != blob.stored_sha256):
        raise ArchiveError(f"blob {blob.key} differs from its record (stored size/sha256)")
    _content, _form, encrypted = parse_blob_key(blob.key)
    if encrypted and decrypt is None:
        return size, False
    with open_content(store, blob.key, decrypt) as stream:
        while stream.read(CHUNK):
            pass
    return size, True


def verify(
    settings: Settings,
    catalog: Catalog,
    snapshot_id: str,
    *,
    full: bool = False,
    decrypt: DecryptHook | None = None,
    workers: int = 4,
) -> FileVerifyResult:
    """Verify one snapshot (see the module docstring) and record the outcome.

    Raises:
        NotFound: unknown snapshot.
        VerifyError: a blob is missing, has the wrong size or hash, or the manifest or
            index differs from the catalog (the first problems are named).
    """
    record = rows.get_snapshot(catalog, snapshot_id)
    if record.status != "completed":
        raise VerifyError(f"file snapshot {record.id} is {record.status}: nothing to verify")
    store = sets.open_target(settings, record.storage)
    problems: list[str] = []
    blobs: list[StoredBlob] = []
    try:
        check_stored(store, record.manifest_key, record.manifest_size, record.manifest_sha256)
        blobs = list(index_blobs(store, record))
    except (ArchiveError, NotFound) as exc:
        problems.append(str(exc))
    present = {i.key: i.size for i in store.list(set_root(record.file_set) + "blobs")}
    for blob in blobs:
        if blob.key not in present:
            problems.append(f"blob {blob.key} is missing")
        elif present[blob.key] != blob.stored_size:
            problems.append(
                f"blob {blob.key} has {present[blob.key]} bytes, not {blob.stored_size}"
            )
    read = checked = 0
    if full and not problems:
        with ThreadPoolExecutor(workers, thread_name_prefix="pgvault-verify") as pool:
            futures = [(b, pool.submit(_check_blob, store, b, decrypt)) for b in blobs]
            for blob, future in futures:
                try:
                    size, decoded = future.result()
                    read += size
                    checked += int(decoded)
                except PgvaultError as exc:
                    problems.append(f"blob {blob.key}: {exc}")
    ok = not problems
    if ok:
        detail = f"{len(blobs)} blobs present with their sizes"
        if full:
            detail += f"; {read} bytes re-hashed, {checked} contents checked"
            if checked < len(blobs):
                detail += f" ({len(blobs) - checked} encrypted, no identity given)"
    else:
        detail = f"{len(problems)} problem(s): " + "; ".join(problems[:SHOWN_PROBLEMS])
    record.verified_at = datetime.now(UTC)
    record.verify_status = "ok" if ok else "failed"
    record.verify_detail = detail
    rows.save_snapshot(catalog, record)
    if not ok:
        raise VerifyError(f"file snapshot {record.id} failed verification: {detail}")
    return FileVerifyResult(record.id, True, full, len(blobs), read, checked, detail)
