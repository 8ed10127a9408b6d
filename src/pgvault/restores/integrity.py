"""The proof that a catalogued backup's stored bytes are the ones it recorded (size and
sha256), before a restore swaps them in or loads them in place.

Two ways, one rule (rule 8: stored objects are untrusted until their sha256 matches):

* :meth:`IntegrityCheck.start` / :meth:`~IntegrityCheck.result`: the stored object is hashed
  by a second read in a thread while the load reads it (a local file, or a stream piped to
  pg_restore or psql);
* :meth:`IntegrityCheck.fetch`: a parallel load (``pg_restore -j`` needs a file) of an
  object that is not a local file downloads it once into the restore's work directory,
  hashing it on the way; the load then reads that file, so the bytes loaded are exactly the
  bytes checked and nothing is downloaded twice.
"""

from __future__ import annotations

import hashlib
import shutil
import threading
from collections.abc import Callable
from pathlib import Path
from typing import IO

from pgvault import private
from pgvault.catalog.records import BackupRecord
from pgvault.dumps.layers import HashingReader
from pgvault.errors import ArchiveError
from pgvault.restores.loading import Source

CHUNK = 1024 * 1024
"""Bytes per read of a download (:meth:`IntegrityCheck.fetch`)."""


ROOM = 64 * 1024 * 1024
"""Bytes of free space, beyond the object's size (and a twentieth of it), that the work
directory's file system must keep for a download (:func:`fetchable`)."""


def fetchable(source: Source, record: BackupRecord | None, home: Path) -> bool:
    """Whether a parallel load of ``source`` should :meth:`~IntegrityCheck.fetch` it first: a
    catalogued backup with a recorded sha256 and size, not a local file, that pg_restore can
    read as stored (a custom archive compressed by pg_dump or not at all, not age-encrypted),
    with room for it under ``home`` (where work directories are). Otherwise the load reads a
    stream as before (piped, or spilled unwrapped when parallel)."""
    if source.local_file is not None or record is None or not record.sha256:
        return False
    if record.format != "custom" or record.encrypted or record.compressed_by == "pgvault":
        return False
    size = record.size_bytes or 0
    try:
        free = shutil.disk_usage(home).free
    except OSError:
        return False
    return free >= size + max(size // 20, ROOM)


class IntegrityCheck:
    """Compares a catalogued backup's stored bytes with the catalog's size and sha256, so a
    corrupt object can never be swapped in (or loaded in place). Without a record (a local
    file given to restore) there is nothing to compare and every step passes."""

    def __init__(self, source: Source, record: BackupRecord | None) -> None:
        self._source = source
        self._record = record
        self._problem: BaseException | None = None
        self._fetched = False
        self._thread = threading.Thread(target=self._run, name="sha256-check", daemon=True)

    def _compare(self, size: int, sha256: str) -> None:
        assert self._record is not None
        if (size, sha256) != (self._record.size_bytes, self._record.sha256):
            raise ArchiveError(
                f"stored backup {self._record.id} is corrupt (sha256/size differ from the "
                "catalog): nothing changed; restore another backup or copy"
            )

    def _run(self) -> None:
        if self._record is None or self._record.sha256 is None:
            return
        try:
            with self._source.open_raw() as raw:
                hashing = HashingReader(raw)
                hashing.drain()
            self._compare(hashing.size, hashing.sha256)
        except BaseException as exc:  # reported by result()
            self._problem = exc

    def start(self) -> None:
        """Begin hashing in the background (a second read of the stored object)."""
        self._thread.start()

    def fetch(self, path: Path, step: Callable[[str], None] | None = None) -> Source:
        """Download the stored object once into ``path`` (a new 0600 file in a private work
        directory), hashing it on the way, and return a :class:`Source` reading that file;
        the check is then done (:meth:`result` returns at once). Call it instead of
        :meth:`start`.

        Raises:
            ArchiveError: size or sha256 differ from the catalog (``path`` is removed).
            StorageError, NotFound: the download failed.
        """
        if self._record is None or self._record.sha256 is None:
            raise ArchiveError("only a catalogued backup with a recorded sha256 is fetched")
        if step is not None:
            step(f"downloading {self._source.label} ({self._record.size_bytes or 0:,} bytes)")
        try:
            digest, size = hashlib.sha256(), 0
            with self._source.open_raw() as raw, private.create(path) as out:
                while chunk := raw.read(CHUNK):
                    digest.update(chunk)
                    out.write(chunk)
                    size += len(chunk)
            self._compare(size, digest.hexdigest())
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        self._fetched = True

        def open_copy() -> IO[bytes]:
            return open(path, "rb")

        return Source(self._source.label, open_copy, path, self._source.decrypt)

    def result(self) -> None:
        """Wait for the check (run it now if it was neither started nor fetched).

        Raises:
            ArchiveError: the stored bytes differ from the catalog.
        """
        if self._fetched:
            return
        if not self._thread.is_alive() and self._thread.ident is None:
            self._thread.start()
        self._thread.join()
        if self._problem is not None:
            raise self._problem
