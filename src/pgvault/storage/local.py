"""Backups in a local directory (or any mounted file system).

A write goes to ``<key>.partial`` beside its final path, is fsynced, then renamed over the
final name, so a crash never leaves a half-written object under a real key. Files are 0600
and the directories pgvault creates 0700, whatever the umask (:mod:`pgvault.private`).
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import IO
from urllib.parse import unquote, urlparse

from pgvault import private
from pgvault.errors import NotFound, StorageError
from pgvault.storage.base import ObjectInfo, ObjectWriter, Storage, validate_key

PARTIAL_SUFFIX = ".partial"
SYNC_THREADS = 8  # parallel fsyncs of sync()


def _info(key: str, path: Path) -> ObjectInfo:
    st = path.stat()
    return ObjectInfo(key=key, size=st.st_size, modified=datetime.fromtimestamp(st.st_mtime, UTC))


def _write_error(store: str, root: Path, path: Path, exc: OSError) -> StorageError:
    """One line for a failed write; a full disk (or quota) says so and how much is left."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        where = next((p for p in (path.parent, *path.parents) if p.exists()), root)
        try:
            free = shutil.disk_usage(where).free
        except OSError:
            free = 0
        return StorageError(
            f"storage target {store!r} is full: {free} bytes left on {root}: free space "
            "there or choose another storage target",
            needs="storage",
        )
    return StorageError(f"cannot write {path}: {exc.strerror}")


class _LocalWriter(ObjectWriter):
    def __init__(
        self,
        key: str,
        final: Path,
        store: str,
        root: Path,
        deferred: list[Path] | None = None,
        made: set[Path] | None = None,
    ) -> None:
        self._key = key
        self._final = final
        self._store = store
        self._root = root
        self._deferred = deferred
        self._partial = final.with_name(final.name + PARTIAL_SUFFIX)
        try:
            if made is None or final.parent not in made:
                private.makedirs(final.parent)
            try:
                self._file: IO[bytes] | None = private.create(self._partial)
            except FileNotFoundError:  # the directory went away since it was made
                private.makedirs(final.parent)
                self._file = private.create(self._partial)
            if made is not None:
                made.add(final.parent)
        except OSError as exc:
            raise _write_error(store, root, final, exc) from exc

    def write(self, data: bytes, /) -> int:
        assert self._file is not None
        try:
            return self._file.write(data)
        except OSError as exc:
            raise _write_error(self._store, self._root, self._partial, exc) from exc

    def commit(self) -> ObjectInfo:
        assert self._file is not None
        try:
            self._file.flush()
            if self._deferred is None:
                os.fsync(self._file.fileno())
            self._file.close()
            self._file = None
            os.replace(self._partial, self._final)
            if self._deferred is not None:
                self._deferred.append(self._final)  # list.append is atomic
        except OSError as exc:
            self.abort()
            raise _write_error(self._store, self._root, self._final, exc) from exc
        return _info(self._key, self._final)

    def abort(self) -> None:
        """Discard the partial file; never raises (a full disk fails the close's flush)."""
        if self._file is not None:
            handle, self._file = self._file, None
            try:
                handle.close()
            except OSError:
                try:
                    os.close(handle.fileno())
                except (OSError, ValueError):
                    pass
        try:
            self._partial.unlink(missing_ok=True)
        except OSError:
            pass


class LocalStorage(Storage):
    """A directory of backups; keys are relative paths under it."""

    scheme = "file"

    def __init__(self, url: str, name: str | None = None) -> None:
        super().__init__(url, name)
        parsed = urlparse(url)
        raw = unquote(parsed.path) if parsed.scheme == "file" else url
        self.root = Path(raw).expanduser().absolute()
        self._unsynced: list[Path] = []
        self._made: set[Path] = set()  # directories batch writers know exist

    def _path(self, key: str) -> Path:
        return self.root / validate_key(key)

    def open_write(self, key: str) -> ObjectWriter:
        return _LocalWriter(key, self._path(key), self.name, self.root)

    def open_batch_write(self, key: str) -> ObjectWriter:
        """Without the fsync at commit: :meth:`sync` fsyncs every such file (and its
        directory) later, all at once, which lets the kernel batch the flushes."""
        return _LocalWriter(key, self._path(key), self.name, self.root, self._unsynced, self._made)

    def sync(self) -> None:
        """fsync the files committed by batch writers, then their directories."""
        paths, self._unsynced[:] = list(self._unsynced), []
        directories = sorted({str(p.parent) for p in paths})

        def flush(path: str) -> None:
            try:
                fd = os.open(path, os.O_RDONLY)
            except FileNotFoundError:
                return  # removed since (e.g. swept): nothing to make durable
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

        try:
            with ThreadPoolExecutor(SYNC_THREADS, thread_name_prefix="pgvault-fsync") as pool:
                list(pool.map(flush, [str(p) for p in paths]))
                list(pool.map(flush, directories))
        except OSError as exc:
            raise StorageError(f"cannot flush writes under {self.root}: {exc.strerror}") from exc

    def open_read(self, key: str) -> IO[bytes]:
        path = self._path(key)
        try:
            return open(path, "rb")  # noqa: SIM115
        except FileNotFoundError as exc:
            raise NotFound(f"stored object {key!r} is missing from {self.root}") from exc
        except OSError as exc:
            raise StorageError(f"cannot read {path}: {exc.strerror}") from exc

    def stat(self, key: str) -> ObjectInfo | None:
        path = self._path(key)
        return _info(key, path) if path.is_file() else None

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        if not self.root.is_dir():
            return
        found = []
        for dirpath, _dirs, files in os.walk(self.root):
            for filename in files:
                if filename.endswith(PARTIAL_SUFFIX):
                    continue
                path = Path(dirpath) / filename
                key = path.relative_to(self.root).as_posix()
                if key.startswith(prefix):
                    found.append((key, path))
        for key, path in sorted(found):
            yield _info(key, path)

    def delete(self, key: str) -> None:
        path = self._path(key)
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:
            raise StorageError(f"cannot delete {path}: {exc.strerror}") from exc
        # prune now-empty directories up to the root
        parent = path.parent
        while parent != self.root and parent.is_dir() and not any(parent.iterdir()):
            parent.rmdir()
            parent = parent.parent

    def discard_partial(self, key: str) -> None:
        final = self._path(key)
        final.with_name(final.name + PARTIAL_SUFFIX).unlink(missing_ok=True)

    def discard_partials(self, prefix: str, before: datetime) -> int:
        """Delete ``*.partial`` files under ``prefix`` last modified before ``before``."""
        removed = 0
        start = self.root / validate_key(prefix.strip("/")) if prefix.strip("/") else self.root
        for dirpath, _dirs, files in os.walk(start):
            for filename in files:
                path = Path(dirpath) / filename
                if not filename.endswith(PARTIAL_SUFFIX):
                    continue
                try:
                    if datetime.fromtimestamp(path.stat().st_mtime, UTC) < before:
                        path.unlink()
                        removed += 1
                except FileNotFoundError:
                    continue
                except OSError as exc:
                    raise StorageError(f"cannot delete {path}: {exc.strerror}") from exc
        return removed

    def check_writable(self) -> None:
        """Create, write and flush a file in the root that never has a name there
        (``O_TMPFILE``, see open(2); where a file system lacks it, :mod:`tempfile` unlinks
        its file at once), so a process killed meanwhile leaves nothing behind.

        Raises:
            StorageError: the directory cannot be created or written.
        """
        try:
            private.makedirs(self.root)
            with tempfile.TemporaryFile(dir=self.root, prefix=".pgvault-write-check-") as probe:
                probe.write(b"ok")
                probe.flush()
        except OSError as exc:
            raise StorageError(
                f"backup directory {self.root} is not writable ({exc.strerror}): "
                "fix its permissions or choose another storage target",
                needs="storage",
            ) from exc

    def local_path(self, key: str) -> Path | None:
        path = self._path(key)
        return path if path.is_file() else None
