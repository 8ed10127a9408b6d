"""Where an application's files live: listing, reading and writing an S3 prefix or a
local directory, behind one small interface (:class:`Place`).

A listing yields :class:`Listed` items in key order (S3's order: by UTF-8 bytes, which is
Python's ``str`` order), so a listing and a manifest can be merged in one pass. Keys are
the application's own (any Unicode, spaces included) and never become storage keys: blobs
are named by their sha256. Writing is all-or-nothing per object (:class:`ObjectWriter`).

:func:`pgvault.files.places.open_place` picks the backend from the URL; the S3 one lives
in :mod:`pgvault.files.s3place`.
"""

from __future__ import annotations

import mimetypes
import os
import re
import secrets
import stat
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO
from urllib.parse import unquote, urlparse

from pgvault.errors import ConfigError, NotFound, StorageError
from pgvault.storage.base import ObjectInfo, ObjectWriter

TEMP_PREFIX = ".pgvault-"
TEMP_SUFFIX = ".partial"


class Changed(StorageError):
    """The object changed between its listing and its read (``IfMatch`` failed)."""


@dataclass(frozen=True)
class Listed:
    """One object as a listing shows it.

    Attributes:
        key: the application's key, relative to the place (``users/42/a.png``).
        size: bytes.
        modified: last modification, aware UTC.
        etag: S3 ETag without quotes (None for a directory).
        version_id: the S3 version listed (versioned listings only).
        mtime_ns: modification time in nanoseconds (directories only).
        mode: permission bits, ``st_mode & 0o7777`` (directories only).
    """

    key: str
    size: int
    modified: datetime
    etag: str | None = None
    version_id: str | None = None
    mtime_ns: int | None = None
    mode: int | None = None


@dataclass
class Opened:
    """An object opened for reading, with what the read itself reported."""

    stream: IO[bytes]
    size: int
    modified: datetime
    etag: str | None = None
    version_id: str | None = None
    content_type: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    mtime_ns: int | None = None
    mode: int | None = None


@dataclass(frozen=True)
class Attributes:
    """What an object carries besides its bytes, for writing it back."""

    content_type: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    mtime_ns: int | None = None
    mode: int | None = None


class Place(ABC):
    """An S3 prefix or a local directory holding an application's files."""

    consistency_kind = "window"

    def __init__(self, url: str) -> None:
        self.url = url

    def versioned(self) -> bool:
        """Whether the place keeps object versions (S3 bucket versioning ``Enabled``)."""
        return False

    @abstractmethod
    def list(self, as_of: datetime | None = None) -> Iterator[Listed]:
        """Objects in key order. With ``as_of`` on a versioned place: each key's newest
        version at or before ``as_of`` (UTC), keys deleted by then left out.

        Raises:
            StorageError: the listing failed (a missing bucket or directory included).
        """

    @abstractmethod
    def open(self, item: Listed, *, if_match: bool = False) -> Opened:
        """Open ``item`` for reading (its listed version on a versioned listing; with
        ``if_match`` only if its ETag is still the listed one).

        Raises:
            NotFound: the object is gone.
            Changed: ``if_match`` and the object changed.
            StorageError: the read failed.
        """

    @abstractmethod
    def head(self, key: str) -> Attributes | None:
        """The attributes of the current object ``key``, or None if missing."""

    @abstractmethod
    def open_write(self, key: str, attributes: Attributes) -> ObjectWriter:
        """Start writing ``key``; visible (with ``attributes``) only on commit.

        Raises:
            StorageError: ``key`` cannot be written here (e.g. unsafe as a path).
        """

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove the object ``key``; a missing one is fine."""

    def check_readable(self) -> None:
        """Prove the place can be listed (one cheap request).

        Raises:
            StorageError: one line saying what is wrong.
        """
        next(iter(self.list()), None)


def compile_excludes(patterns: Sequence[str]) -> Callable[[str], bool]:
    """A predicate saying whether a key is excluded by any of ``patterns``.

    ``**`` matches across ``/``, ``*`` and ``?`` stay within a path segment, and a pattern
    without ``/`` is matched against the last segment too (as in ``.gitignore``):
    ``*.tmp`` excludes ``a/b.tmp``; ``cache/**`` excludes everything under ``cache/``.

    Raises:
        ConfigError: a pattern is empty.
    """
    compiled: list[re.Pattern[str]] = []
    for pattern in patterns:
        if not pattern.strip():
            raise ConfigError("an exclude pattern is empty: remove it")
        text = pattern.strip().lstrip("/")
        regex, i = "", 0
        while i < len(text):
            if text.startswith("**", i):
                regex += ".*"
                i += 2
            elif text[i] == "*":
                regex += "[^/]*"
                i += 1
            elif text[i] == "?":
                regex += "[^/]"
                i += 1
            else:
                regex += re.escape(text[i])
                i += 1
        prefix = "(?:.*/)?" if "/" not in text else ""
        compiled.append(re.compile(f"^{prefix}{regex}$", re.DOTALL))
    return lambda key: any(p.match(key) for p in compiled)


def filtered(items: Iterator[Listed], patterns: Sequence[str]) -> Iterator[Listed]:
    """``items`` without those ``patterns`` exclude (see :func:`compile_excludes`)."""
    if not patterns:
        yield from items
        return
    excluded = compile_excludes(patterns)
    for item in items:
        if not excluded(item.key):
            yield item


# --- a local directory ---------------------------------------------------------------------


def safe_relative(key: str) -> str:
    """``key`` if it can name a file under a directory without leaving it.

    Raises:
        StorageError: empty, absolute, with ``.``/``..``/empty segments or a NUL byte.
    """
    parts = key.split("/")
    if not key or key.startswith("/") or "\x00" in key or any(p in ("", ".", "..") for p in parts):
        raise StorageError(f"object key {key!r} cannot be a path under a directory: skipped")
    return key


class _FileWriter(ObjectWriter):
    """A file written as ``.pgvault-<hex>.partial`` beside its final name, fsynced, given
    its mode and modification time, then renamed over the final name."""

    def __init__(self, final: Path, key: str, attributes: Attributes) -> None:
        self._final = final
        self._key = key
        self._attributes = attributes
        self._temp = final.with_name(f"{TEMP_PREFIX}{secrets.token_hex(6)}{TEMP_SUFFIX}")
        try:
            self._file: IO[bytes] | None = open(self._temp, "xb")  # noqa: SIM115
        except OSError as exc:
            raise StorageError(f"cannot write {final}: {exc.strerror}") from exc

    def write(self, data: bytes, /) -> int:
        assert self._file is not None
        try:
            return self._file.write(data)
        except OSError as exc:
            raise StorageError(f"cannot write {self._final}: {exc.strerror}") from exc

    def commit(self) -> ObjectInfo:
        assert self._file is not None
        try:
            self._file.flush()
            os.fsync(self._file.fileno())
            if self._attributes.mode is not None:
                os.fchmod(self._file.fileno(), self._attributes.mode & 0o777)
            self._file.close()
            self._file = None
            if self._attributes.mtime_ns is not None:
                ns = self._attributes.mtime_ns
                os.utime(self._temp, ns=(ns, ns))
            os.replace(self._temp, self._final)
        except OSError as exc:
            self.abort()
            raise StorageError(f"cannot write {self._final}: {exc.strerror}") from exc
        st = self._final.stat()
        return ObjectInfo(self._key, st.st_size, datetime.fromtimestamp(st.st_mtime, UTC))

    def abort(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        self._temp.unlink(missing_ok=True)


class DirectoryPlace(Place):
    """A local directory; keys are ``/``-separated paths under it. Symbolic links and
    special files are skipped (never followed), and so are pgvault's own temp files."""

    consistency_kind = "directory"

    def __init__(self, url: str) -> None:
        super().__init__(url)
        parsed = urlparse(url)
        raw = unquote(parsed.path) if parsed.scheme == "file" else url
        self.root = Path(raw).expanduser().absolute()

    def _walk(self, directory: Path, prefix: str) -> Iterator[Listed]:
        try:
            entries = list(os.scandir(directory))
        except FileNotFoundError as exc:
            if directory == self.root:
                raise StorageError(f"directory {self.root} does not exist") from exc
            return
        except OSError as exc:
            raise StorageError(f"cannot list {directory}: {exc.strerror}") from exc
        # Sorting a directory's entries as "name/" for directories yields full keys in
        # plain string order ("a-b" < "a/c"), the order manifests are merged in.
        entries.sort(key=lambda e: e.name + "/" if e.is_dir(follow_symlinks=False) else e.name)
        for entry in entries:
            name = os.fsdecode(entry.name)
            if entry.is_dir(follow_symlinks=False):
                yield from self._walk(Path(entry.path), f"{prefix}{name}/")
                continue
            if name.startswith(TEMP_PREFIX) and name.endswith(TEMP_SUFFIX):
                continue
            try:
                st = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue
            if not stat.S_ISREG(st.st_mode):
                continue
            yield Listed(
                key=prefix + name,
                size=st.st_size,
                modified=datetime.fromtimestamp(st.st_mtime_ns / 1e9, UTC),
                mtime_ns=st.st_mtime_ns,
                mode=stat.S_IMODE(st.st_mode),
            )

    def list(self, as_of: datetime | None = None) -> Iterator[Listed]:
        del as_of  # a directory keeps no versions
        return self._walk(self.root, "")

    def _path(self, key: str) -> Path:
        return self.root / safe_relative(key)

    def open(self, item: Listed, *, if_match: bool = False) -> Opened:
        path = self._path(item.key)
        try:
            handle = open(path, "rb", buffering=0)  # noqa: SIM115
            st = os.fstat(handle.fileno())
        except FileNotFoundError as exc:
            raise NotFound(f"{path} does not exist (any more)") from exc
        except OSError as exc:
            raise StorageError(f"cannot read {path}: {exc.strerror}") from exc
        if if_match and (st.st_size, st.st_mtime_ns) != (item.size, item.mtime_ns):
            handle.close()
            raise Changed(f"{path} changed while it was read")
        return Opened(
            stream=handle,
            size=st.st_size,
            modified=datetime.fromtimestamp(st.st_mtime_ns / 1e9, UTC),
            content_type=mimetypes.guess_type(item.key)[0],
            mtime_ns=st.st_mtime_ns,
            mode=stat.S_IMODE(st.st_mode),
        )

    def head(self, key: str) -> Attributes | None:
        path = self._path(key)
        try:
            st = path.lstat()
        except FileNotFoundError:
            return None
        return Attributes(mtime_ns=st.st_mtime_ns, mode=stat.S_IMODE(st.st_mode))

    def open_write(self, key: str, attributes: Attributes) -> ObjectWriter:
        final = self._path(key)
        root = os.path.realpath(self.root)
        try:
            final.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(f"cannot create {final.parent}: {exc.strerror}") from exc
        parent = os.path.realpath(final.parent)
        if parent != root and not parent.startswith(root + os.sep):
            raise StorageError(f"{final} would be written outside {self.root} (a link): refused")
        if final.is_symlink() or final.is_dir():
            raise StorageError(f"{final} is a link or a directory: not overwritten")
        return _FileWriter(final, key, attributes)

    def delete(self, key: str) -> None:
        path = self._path(key)
        try:
            if not path.is_symlink():
                path.unlink(missing_ok=True)
        except OSError as exc:
            raise StorageError(f"cannot delete {path}: {exc.strerror}") from exc

    def check_readable(self) -> None:
        if not self.root.is_dir():
            raise StorageError(f"directory {self.root} does not exist: check the file set's source")
