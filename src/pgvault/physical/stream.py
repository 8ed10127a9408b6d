"""The byte chains of physical backups and WAL files, built from :mod:`pgvault.dumps.layers`.

Writing: bytes -> zstd -> [age] -> sha256/size -> storage writer (committed only when the
whole stream went through). Reading: storage -> sha256/size -> [age] -> zstd -> bytes, with
the stored sha256 and size compared with the catalog's once the stream is read to its end.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import IO, cast

import zstandard

from pgvault.dumps.encryption import Encryptor, parse_recipients
from pgvault.dumps.layers import DecryptHook, HashingReader, HashingWriter, Stage, compressor
from pgvault.errors import ArchiveError
from pgvault.storage import ObjectInfo, Storage

ZSTD_LEVEL = 3  # zstd's default; WAL and data pages compress 3-10x at this level


class WriteChain:
    """compress -> [encrypt] -> hash -> ``store.open_write(key)``; use :meth:`commit` or
    :meth:`abort` exactly once.

    Args:
        threads: zstd worker threads (0: in this thread). Base backups use 2 on a 2-core
            machine: pg_basebackup itself needs little CPU, so compression is the bottleneck.
    """

    def __init__(
        self,
        store: Storage,
        key: str,
        recipients: Sequence[str],
        *,
        level: int = ZSTD_LEVEL,
        threads: int = 0,
    ) -> None:
        self.writer = store.open_write(key)
        self._hashing = HashingWriter(self.writer)
        self._encryptor = (
            Encryptor(self._hashing, parse_recipients(recipients)) if recipients else None
        )
        sink = self._encryptor or self._hashing
        self._top: Stage = compressor("zstd", level, sink, threads)
        self.fed = 0

    def write(self, data: bytes, /) -> int:
        """Feed plain bytes; returns their length."""
        self._top.write(data)
        self.fed += len(data)
        return len(data)

    def commit(self) -> ObjectInfo:
        """Flush every layer and make the object visible.

        Raises:
            StorageError: the backend failed (nothing is visible then).
        """
        try:
            self._top.close()
            if self._encryptor is not None:
                self._encryptor.close()
        except BaseException:
            self.writer.abort()
            raise
        return self.writer.commit()

    def abort(self) -> None:
        """Discard everything written; never raises."""
        self.writer.abort()

    @property
    def size(self) -> int:
        """Stored bytes so far."""
        return self._hashing.size

    @property
    def sha256(self) -> str:
        """sha256 of the stored bytes so far (hex)."""
        return self._hashing.sha256


class ReadChain(io.RawIOBase):
    """The plain bytes of a stored object written by :class:`WriteChain`.

    Call :meth:`check` after reading to the end: it drains the stored stream and compares
    its size and sha256 with ``size``/``sha256`` (the catalog's).

    Raises:
        ArchiveError: encrypted without ``decrypt``, corrupt zstd data, or (from
            :meth:`check`) bytes that differ from the catalog.
    """

    def __init__(
        self,
        raw: IO[bytes],
        *,
        encrypted: bool,
        decrypt: DecryptHook | None,
        size: int | None,
        sha256: str | None,
        label: str,
    ) -> None:
        self._hashing = HashingReader(raw)
        self._expected = (size, sha256)
        self._label = label
        stream: IO[bytes] = cast(IO[bytes], io.BufferedReader(self._hashing, 1024 * 1024))
        if encrypted:
            if decrypt is None:
                raise ArchiveError(f"{label} is age-encrypted: give --identity FILE")
            stream = decrypt(stream)
        self._plain = zstandard.ZstdDecompressor().stream_reader(
            stream, read_across_frames=True, closefd=True
        )

    def readable(self) -> bool:
        return True

    def readinto(self, target: bytearray | memoryview) -> int:  # type: ignore[override]
        try:
            data = self._plain.read(len(target))
        except zstandard.ZstdError as exc:
            raise ArchiveError(
                f"{self._label} is corrupt ({exc}): the stored copy is damaged"
            ) from exc
        memoryview(target)[: len(data)] = data
        return len(data)

    def check(self) -> None:
        """Compare the stored bytes with the catalog (after the plain stream was read).

        Raises:
            ArchiveError: size or sha256 differ.
        """
        self._hashing.drain()
        size, sha256 = self._expected
        if sha256 is not None and (self._hashing.size, self._hashing.sha256) != (size, sha256):
            raise ArchiveError(
                f"{self._label} is corrupt: its stored bytes differ from the catalog's sha256"
            )

    def close(self) -> None:
        if not self.closed:
            self._plain.close()  # type: ignore[no-untyped-call]
        super().close()
