"""The byte pipeline: compression, hashing, and recognising what a stream holds.

Writing is a chain of small writers, each passing bytes to the next::

    pg_dump stdout --1 MiB chunks--> Compressor --> [Encryptor] --> HashingWriter --> storage

Reading is a chain of file-like readers built by :func:`open_layers`, which detects each
layer by its magic bytes (never by a file name): age, zstd, gzip, then the dump itself.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import queue
import zlib
from dataclasses import dataclass
from typing import IO, Literal, Protocol, cast

import zstandard

from pgvault.errors import ArchiveError, ConfigError

Layer = Literal["age", "zstd", "gzip"]
DumpKind = Literal["custom", "tar", "plain"]

ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
GZIP_MAGIC = b"\x1f\x8b"
AGE_MAGIC = b"age-encryption.org/v1"
CUSTOM_MAGIC = b"PGDMP"
DEFAULT_LEVELS = {"zstd": 3, "gzip": 6}
PEEK_SIZE = 1024


class Sink(Protocol):
    """Anything bytes can be written to."""

    def write(self, data: bytes, /) -> int: ...


class Stage(Protocol):
    """A writer in the chain: accepts bytes, then ``close()`` flushes into the next stage."""

    def write(self, data: bytes, /) -> int: ...

    def close(self) -> None: ...


class HashingWriter:
    """Passes bytes on while counting them and computing their sha256."""

    def __init__(self, sink: Sink) -> None:
        self._sink = sink
        self._hash = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes, /) -> int:
        """Hash, count and forward ``data``; returns its length in bytes."""
        self._hash.update(data)
        self.size += len(data)
        self._sink.write(data)
        return len(data)

    def close(self) -> None:
        """Nothing to flush."""

    @property
    def sha256(self) -> str:
        """Hex sha256 of everything written so far."""
        return self._hash.hexdigest()


class _ZlibWriter:
    def __init__(self, sink: Sink, level: int) -> None:
        self._sink = sink
        self._obj = zlib.compressobj(level, zlib.DEFLATED, 31)  # 31: gzip container

    def write(self, data: bytes, /) -> int:
        out = self._obj.compress(data)
        if out:
            self._sink.write(out)
        return len(data)

    def close(self) -> None:
        self._sink.write(self._obj.flush())


class _ZstdWriter:
    def __init__(self, sink: Sink, level: int, threads: int = 0) -> None:
        self._sink = sink
        # Dumps: single-threaded: pg_dump and the server already use the other core; zstd
        # worker threads gained nothing and cost ~40 MiB (bench/RESULTS.md, c0 vs c3).
        # Base backups pass threads=2: pg_basebackup needs little CPU (bench_pitr.py).
        params = zstandard.ZstdCompressionParameters.from_level(level, threads=threads)
        self._obj = zstandard.ZstdCompressor(compression_params=params).compressobj()

    def write(self, data: bytes, /) -> int:
        out = self._obj.compress(data)
        if out:
            self._sink.write(out)
        return len(data)

    def close(self) -> None:
        self._sink.write(self._obj.flush())


class _PassThrough:
    def __init__(self, sink: Sink) -> None:
        self._sink = sink

    def write(self, data: bytes, /) -> int:
        return self._sink.write(data)

    def close(self) -> None:
        """Nothing to flush."""


def compressor(method: str, level: int | None, sink: Sink, threads: int = 0) -> Stage:
    """A stage compressing with ``zstd`` (one frame; ``threads`` worker threads, 0: in the
    caller's thread), ``gzip`` (RFC 1952) or ``none``.

    The output is what the ``zstd -d`` / ``gunzip`` command line tools read.

    Raises:
        ConfigError: an unknown method.
    """
    if method == "zstd":
        return _ZstdWriter(sink, DEFAULT_LEVELS["zstd"] if level is None else level, threads)
    if method == "gzip":
        return _ZlibWriter(sink, DEFAULT_LEVELS["gzip"] if level is None else level)
    if method == "none":
        return _PassThrough(sink)
    raise ConfigError(f"unknown compression {method!r}: use zstd, gzip or none")


def sniff_layer(head: bytes) -> Layer | None:
    """The outer wrapping of a stream from its first bytes, or None if unwrapped."""
    if head.startswith(AGE_MAGIC):
        return "age"
    if head.startswith(ZSTD_MAGIC):
        return "zstd"
    if head.startswith(GZIP_MAGIC):
        return "gzip"
    return None


def sniff_dump(head: bytes) -> DumpKind | None:
    """What kind of dump a decompressed stream holds, from its first bytes.

    ``custom``: pg_dump's custom archive (magic ``PGDMP``); ``tar``: a tar of a directory
    archive (``ustar`` at offset 257); ``plain``: SQL text as pg_dump writes it.
    """
    if head.startswith(CUSTOM_MAGIC):
        return "custom"
    if len(head) >= 262 and head[257:262] == b"ustar":
        return "tar"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        # the head may end inside a multi-byte character
        text = head[:-4].decode("utf-8", "replace")
    stripped = text.lstrip("\ufeff \t\r\n")
    if stripped.startswith(("--", "SET ", "SELECT ", "CREATE ", "\\restrict", "BEGIN")):
        return "plain"
    return None


class PeekReader(io.RawIOBase):
    """A readable stream whose first bytes can be looked at without consuming them."""

    def __init__(self, raw: IO[bytes]) -> None:
        self._raw = raw
        self._buffer = b""

    def peek_head(self, size: int = PEEK_SIZE) -> bytes:
        """Up to ``size`` bytes from the start, left in place for the next read."""
        while len(self._buffer) < size:
            more = self._raw.read(size - len(self._buffer))
            if not more:
                break
            self._buffer += more
        return self._buffer[:size]

    def readable(self) -> bool:
        return True

    def readinto(self, target: bytearray | memoryview) -> int:  # type: ignore[override]
        view = memoryview(target)
        if self._buffer:
            n = min(len(view), len(self._buffer))
            view[:n] = self._buffer[:n]
            self._buffer = self._buffer[n:]
            return n
        data = self._raw.read(len(view))
        view[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self._raw.close()
        super().close()


@dataclass
class OpenedDump:
    """A dump stream with its wrappings removed, and what they were."""

    stream: IO[bytes]
    kind: DumpKind
    layers: list[Layer]
    head: bytes = b""  # the dump's first bytes, as peeked (for dumps.header)


def open_layers(raw: IO[bytes], decrypt: DecryptHook | None = None) -> OpenedDump:
    """Unwrap age/zstd/gzip layers (detected by content) down to the dump.

    Args:
        raw: the stored bytes, as a readable stream.
        decrypt: turns an age-encrypted stream into its plaintext stream; needed only
            when the first layer is ``age``.

    Raises:
        ArchiveError: not a PostgreSQL dump (or an unknown wrapping), with what was found.
    """
    layers: list[Layer] = []
    stream: IO[bytes] = raw
    for _ in range(4):
        peek = PeekReader(stream)
        head = peek.peek_head()
        layer = sniff_layer(head)
        if layer is None:
            kind = sniff_dump(head)
            if kind is None:
                what = "an empty file" if not head else "not a PostgreSQL dump"
                raise ArchiveError(
                    f"this is {what} (expected a pg_dump custom, directory or plain "
                    "archive, optionally gzip/zstd compressed or age encrypted)"
                )
            return OpenedDump(
                stream=io.BufferedReader(peek, 1024 * 1024), kind=kind, layers=layers, head=head
            )
        layers.append(layer)
        readable = cast(IO[bytes], peek)
        if layer == "age":
            if decrypt is None:
                raise ArchiveError(
                    "this backup is age-encrypted: give its age identity file", needs="identity"
                )
            stream = decrypt(readable)
        elif layer == "zstd":
            stream = _checked(
                zstandard.ZstdDecompressor().stream_reader(
                    readable, read_across_frames=True, closefd=True
                ),
                layer,
            )
        else:
            inner = io.BufferedReader(peek)  # GzipFile never closes the stream it is given
            stream = _checked(gzip.GzipFile(fileobj=inner, mode="rb"), layer, under=inner)
    raise ArchiveError("too many nested compression layers: not a pgvault backup")


class _CheckedReader(io.RawIOBase):
    """A decompressing reader whose errors (corrupt or cut-short data) become ArchiveError,
    so callers see one pgvault error instead of zlib's, gzip's or zstandard's."""

    def __init__(self, raw: IO[bytes], layer: Layer, under: IO[bytes] | None = None) -> None:
        self._raw = raw
        self._layer = layer
        self._under = under

    def readable(self) -> bool:
        return True

    def readinto(self, target: bytearray | memoryview) -> int:  # type: ignore[override]
        try:
            data = self._raw.read(len(target))
        except (zstandard.ZstdError, zlib.error, gzip.BadGzipFile, EOFError) as exc:
            raise ArchiveError(
                f"the {self._layer} data is corrupt or cut short ({exc}): the backup is damaged"
            ) from exc
        memoryview(target)[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self._raw.close()
        if self._under is not None:
            self._under.close()
        super().close()


def _checked(raw: object, layer: Layer, under: IO[bytes] | None = None) -> IO[bytes]:
    return cast(IO[bytes], _CheckedReader(cast(IO[bytes], raw), layer, under))


class DecryptHook(Protocol):
    """Turns an encrypted stream into a plaintext stream."""

    def __call__(self, encrypted: IO[bytes], /) -> IO[bytes]: ...


class QueueReader(io.RawIOBase):
    """The reading end of a bounded queue of chunks (an empty chunk ends the stream): how a
    push-style chain hands bytes to a pull-style reader in another thread."""

    def __init__(self, chunks: queue.Queue[bytes]) -> None:
        self._chunks = chunks
        self._buffer = b""
        self._eof = False

    def readable(self) -> bool:
        return True

    def readinto(self, target: bytearray | memoryview) -> int:  # type: ignore[override]
        while not self._buffer and not self._eof:
            chunk = self._chunks.get()
            if not chunk:
                self._eof = True
            self._buffer = chunk
        n = min(len(target), len(self._buffer))
        memoryview(target)[:n] = self._buffer[:n]
        self._buffer = self._buffer[n:]
        return n


def copy_stream(source: IO[bytes], sink: Sink, chunk_size: int = 1024 * 1024) -> int:
    """Copy until EOF in chunks of ``chunk_size`` bytes; return the bytes copied."""
    total = 0
    while True:
        chunk = source.read(chunk_size)
        if not chunk:
            return total
        sink.write(chunk)
        total += len(chunk)


class HashingReader(io.RawIOBase):
    """A readable stream that counts and hashes (sha256) the bytes read through it."""

    def __init__(self, raw: IO[bytes]) -> None:
        self._raw = raw
        self._hash = hashlib.sha256()
        self.size = 0

    def readable(self) -> bool:
        return True

    def readinto(self, target: bytearray | memoryview) -> int:  # type: ignore[override]
        data = self._raw.read(len(target))
        n = len(data)
        memoryview(target)[:n] = data
        self._hash.update(data)
        self.size += n
        return n

    def drain(self) -> None:
        """Read (and hash) whatever is left."""
        while self._raw_chunk():
            pass

    def _raw_chunk(self) -> bool:
        data = self._raw.read(1024 * 1024)
        self._hash.update(data)
        self.size += len(data)
        return bool(data)

    @property
    def sha256(self) -> str:
        """Hex sha256 of the bytes read so far."""
        return self._hash.hexdigest()

    def close(self) -> None:
        self._raw.close()
        super().close()
