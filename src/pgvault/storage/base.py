"""The storage interface every backend implements (local directory, S3, ...).

A storage target holds objects under string keys such as ``app/2026/11/21/<id>.dump``.
Writes are all-or-nothing: bytes go to an :class:`ObjectWriter` and only ``commit()``
makes the object visible under its key; ``abort()`` (or a crash) leaves nothing listed.
Idea from Barman's ``CloudInterface``: provider limits as class constants, small hooks.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO

from pgvault.errors import StorageError

_SAFE_KEY = re.compile(r"^[A-Za-z0-9._\-+=@,:/ ]+$")


def validate_key(key: str) -> str:
    """Return ``key`` if it is a safe relative object key.

    Refused: empty keys, absolute paths, ``..`` or ``.`` segments, backslashes, control
    characters and empty segments, so no key can escape its target.

    Raises:
        StorageError: the key is unsafe (message names it).
    """
    parts = key.split("/")
    if (
        not key
        or key.startswith("/")
        or not _SAFE_KEY.match(key)
        or any(part in ("", ".", "..") for part in parts)
    ):
        raise StorageError(
            f"unsafe storage key {key!r}: use relative names of letters, digits, ._-+=@,: and /"
        )
    return key


@dataclass(frozen=True)
class ObjectInfo:
    """A stored object: its key, size in bytes and last modification time (UTC).

    ``retain_until`` (UTC) and ``legal_hold`` tell when the backend refuses to delete it
    (S3 Object Lock); backends without locks leave them None and False.
    """

    key: str
    size: int
    modified: datetime
    retain_until: datetime | None = None
    legal_hold: bool = False


class ObjectWriter(ABC):
    """An object being written; invisible under its key until :meth:`commit`."""

    @abstractmethod
    def write(self, data: bytes, /) -> int:
        """Append ``data``; returns its length in bytes.

        Raises:
            StorageError: the backend failed.
        """

    @abstractmethod
    def commit(self) -> ObjectInfo:
        """Make the object visible under its key, atomically.

        Raises:
            StorageError: the backend failed; nothing is visible then.
        """

    @abstractmethod
    def abort(self) -> None:
        """Discard what was written; never raises."""


class Storage(ABC):
    """A place backups are kept. Subclasses are named after their module (``LocalStorage``)."""

    scheme: str = ""

    def __init__(self, url: str, name: str | None = None) -> None:
        self.url = url
        self.name = name or url

    @abstractmethod
    def open_write(self, key: str) -> ObjectWriter:
        """Start writing the object ``key`` (replacing it on commit).

        Raises:
            StorageError: the target cannot be written.
        """

    @abstractmethod
    def open_read(self, key: str) -> IO[bytes]:
        """A readable stream of the object ``key``.

        Raises:
            NotFound: no such object.
            StorageError: the target cannot be read.
        """

    @abstractmethod
    def stat(self, key: str) -> ObjectInfo | None:
        """The object's info, or None if it does not exist."""

    @abstractmethod
    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Committed objects whose key starts with ``prefix``, in key order."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove the object ``key``; removing a missing object is not an error."""

    @abstractmethod
    def discard_partial(self, key: str) -> None:
        """Remove what an interrupted writer of ``key`` may have left (temp files, uploads)."""

    @abstractmethod
    def check_writable(self) -> None:
        """Prove the target exists and accepts writes.

        Raises:
            StorageError: one line saying what is wrong and what to do.
        """

    def discard_partials(self, prefix: str, before: datetime) -> int:
        """Remove what interrupted writers left under ``prefix`` (temp files, unfinished
        uploads) that was started before ``before`` (UTC); returns how many. The default
        removes nothing (backends without such leftovers).

        Raises:
            StorageError: the leftovers cannot be listed or removed.
        """
        del prefix, before
        return 0

    def local_path(self, key: str) -> Path | None:
        """A seekable local file holding the object, when the backend has one."""
        del key
        return None

    def open_batch_write(self, key: str) -> ObjectWriter:
        """Like :meth:`open_write`, for one of many objects written in a row (file snapshot
        blobs): the object may become durable only at the next :meth:`sync` (a directory
        skips the per-object fsync; an S3 object is durable once committed)."""
        return self.open_write(key)

    def sync(self) -> None:  # noqa: B027 - nothing to do unless a backend defers flushes
        """Make every object committed through :meth:`open_batch_write` durable.

        Raises:
            StorageError: the data could not be flushed.
        """

    def write_bytes(self, key: str, data: bytes, *, batch: bool = False) -> ObjectInfo:
        """Write a small object in one go (``batch``: through :meth:`open_batch_write`)."""
        writer = self.open_batch_write(key) if batch else self.open_write(key)
        try:
            writer.write(data)
            return writer.commit()
        except BaseException:
            writer.abort()
            raise

    def read_bytes(self, key: str) -> bytes:
        """Read a small object whole (manifests, globals)."""
        with self.open_read(key) as stream:
            return stream.read()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"
