"""Blobs: each distinct content stored once per storage target, named by its sha256.

Layout under a storage target (a set's keys all start with ``files/<set>/``)::

    files/<set>/blobs/<sha[:2]>/<sha>[.zst]                  plain blobs
    files/<set>/blobs-age-<fp>/<sha[:2]>/<sha>[.zst].age     age-encrypted to the recipients
                                                             whose fingerprint is <fp>
    files/<set>/snapshots/<id>.index.zst                     referenced blobs (plain)
    files/<set>/snapshots/<id>.manifest.zst[.age]            the entries (committed last)

The stored form is chosen from the content alone (:func:`choose_form`), so one sha256 always
has one key: zstd, unless the bytes already are compressed (images, video, archives...,
recognised by their magic bytes, never by a name or a declared type). Blobs are readable
with standard tools: ``age -d -i key.txt B.zst.age | zstd -d``. A pool per recipient set
means a key rotation stores new blobs instead of reusing ones the new key cannot read.
"""

from __future__ import annotations

import hashlib
import io
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import IO, Any, Literal

import pyrage
import zstandard

from pgvault.dumps.encryption import Encryptor
from pgvault.dumps.layers import DecryptHook, HashingWriter, Sink, Stage, compressor
from pgvault.errors import ArchiveError
from pgvault.storage.base import ObjectWriter, Storage

Form = Literal["zstd", "none"]
ZSTD_LEVEL = 3
CHUNK = 1024 * 1024

_COMPRESSED_MAGIC: tuple[tuple[int, bytes], ...] = (
    (0, b"\x89PNG\r\n\x1a\n"),
    (0, b"\xff\xd8\xff"),  # JPEG
    (0, b"GIF87a"),
    (0, b"GIF89a"),
    (0, b"PK\x03\x04"),  # zip, docx/xlsx/odt, jar, apk, epub
    (0, b"PK\x05\x06"),
    (0, b"\x1f\x8b"),  # gzip
    (0, b"\x28\xb5\x2f\xfd"),  # zstd
    (0, b"BZh"),
    (0, b"\xfd7zXZ\x00"),  # xz
    (0, b"7z\xbc\xaf\x27\x1c"),
    (0, b"Rar!\x1a\x07"),
    (0, b"\x04\x22\x4d\x18"),  # lz4
    (4, b"ftyp"),  # ISO media: mp4, mov, m4a, heic, avif, 3gp
    (0, b"\x1a\x45\xdf\xa3"),  # matroska, webm
    (0, b"OggS"),
    (0, b"fLaC"),
    (0, b"ID3"),  # mp3
    (0, b"wOFF"),
    (0, b"wOF2"),
    (0, b"\xff\x0a"),  # JPEG XL
    (0, b"age-encryption.org/v1"),
)


def choose_form(head: bytes) -> Form:
    """``none`` for content that is already compressed (by its first bytes), else
    ``zstd``; empty content is stored as is.

    Recognised: PNG, JPEG, GIF, WebP, AVI, JPEG XL, zip family, gzip, zstd, bzip2, xz, 7z, RAR,
    lz4, ISO media (mp4/mov/heic/avif), Matroska/WebM, Ogg, FLAC, MP3 (ID3 and frame sync),
    WOFF/WOFF2, age.
    """
    if not head:
        return "none"
    if head[:4] == b"RIFF" and head[8:12] in (b"WEBP", b"AVI "):
        return "none"
    if head[:2] in (b"\xff\xfb", b"\xff\xf3", b"\xff\xf2", b"\xff\xf1", b"\xff\xf9"):
        return "none"  # MPEG audio frames, ADTS AAC
    for offset, magic in _COMPRESSED_MAGIC:
        if head[offset : offset + len(magic)] == magic:
            return "none"
    return "zstd"


def set_root(file_set: str) -> str:
    """``files/<set>/``: every key of a set starts with it."""
    return f"files/{file_set}/"


def recipients_fingerprint(recipients: Sequence[str]) -> str:
    """12 hex digits naming a set of age recipients (order and spaces ignored)."""
    text = "\n".join(sorted(r.strip() for r in recipients))
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def pool_prefix(file_set: str, recipients: Sequence[str]) -> str:
    """The key prefix of a set's blobs for a recipient set (``[]``: plain blobs)."""
    if not recipients:
        return f"{set_root(file_set)}blobs/"
    return f"{set_root(file_set)}blobs-age-{recipients_fingerprint(recipients)}/"


def blob_key(pool: str, sha256: str, form: Form, encrypted: bool) -> str:
    """``<pool><sha[:2]>/<sha>`` + ``.zst`` when compressed + ``.age`` when encrypted."""
    return (
        f"{pool}{sha256[:2]}/{sha256}"
        + (".zst" if form == "zstd" else "")
        + (".age" if encrypted else "")
    )


def parse_blob_key(key: str) -> tuple[str, Form, bool]:
    """``(content sha256, form, encrypted)`` of a blob key.

    Raises:
        ArchiveError: not a blob key.
    """
    name = key.rsplit("/", 1)[-1]
    encrypted = name.endswith(".age")
    name = name.removesuffix(".age")
    form: Form = "zstd" if name.endswith(".zst") else "none"
    sha = name.removesuffix(".zst")
    if len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
        raise ArchiveError(f"{key!r} is not a blob key")
    return sha, form, encrypted


@dataclass(frozen=True)
class StoredBlob:
    """A blob in storage: its key, stored size (bytes) and sha256 of the stored bytes
    (None when the blob was found in storage rather than written or recorded)."""

    key: str
    stored_size: int
    stored_sha256: str | None


_local = threading.local()


def _compress(data: bytes) -> bytes:
    # A ZstdCompressor is not thread-safe: one per worker thread.
    compressor_ = getattr(_local, "zstd", None)
    if compressor_ is None:
        compressor_ = zstandard.ZstdCompressor(level=ZSTD_LEVEL)
        _local.zstd = compressor_
    return bytes(compressor_.compress(data))


def store_bytes(store: Storage, key: str, data: bytes, recipients: list[Any]) -> StoredBlob:
    """Store one content held in memory as the blob ``key`` (form from the key's suffix),
    durable at the store's next ``sync()``.

    Raises:
        StorageError: the write failed (nothing is visible then).
    """
    _sha, form, encrypted = parse_blob_key(key)
    stored = _compress(data) if form == "zstd" else data
    if encrypted:
        stored = bytes(pyrage.encrypt(stored, recipients))
    info = store.write_bytes(key, stored, batch=True)
    return StoredBlob(key, info.size, hashlib.sha256(stored).hexdigest())


class _Tee:
    def __init__(self, first: Sink, second: Sink) -> None:
        self._sinks = (first, second)

    def write(self, data: bytes, /) -> int:
        for sink in self._sinks:
            sink.write(data)
        return len(data)


class LayeredWriter:
    """Bytes in, [zstd] -> (``tap``) -> [age] -> sha256 and size -> an object writer. The
    ``tap`` sees the compressed plaintext (a local copy of a manifest)."""

    def __init__(
        self,
        writer: ObjectWriter,
        *,
        compress: bool,
        recipients: list[Any],
        tap: Sink | None = None,
    ) -> None:
        self._writer = writer
        self._hashing = HashingWriter(writer)
        self._encryptor = Encryptor(self._hashing, recipients) if recipients else None
        below: Sink = self._encryptor or self._hashing
        self._top: Stage = compressor(
            "zstd" if compress else "none", ZSTD_LEVEL, _Tee(tap, below) if tap else below
        )

    def write(self, data: bytes, /) -> int:
        """Feed bytes; returns their length."""
        self._top.write(data)
        return len(data)

    def commit(self) -> tuple[int, str]:
        """Flush the layers and make the object visible; returns the stored ``(size,
        sha256)``.

        Raises:
            StorageError: the write failed (the object is discarded).
        """
        try:
            self._top.close()
            if self._encryptor is not None:
                self._encryptor.close()
        except BaseException:
            self.abort()
            raise
        self._writer.commit()
        return self._hashing.size, self._hashing.sha256

    def abort(self) -> None:
        """Discard what was written; never raises."""
        self._writer.abort()


class BlobWriter(LayeredWriter):
    """A blob streamed into storage (form and encryption from its key). Call
    :meth:`commit_blob` once the content's sha256 is proven, or :meth:`abort`."""

    def __init__(self, store: Storage, key: str, recipients: list[Any]) -> None:
        _sha, form, encrypted = parse_blob_key(key)
        self.key = key
        super().__init__(
            store.open_batch_write(key),
            compress=form == "zstd",
            recipients=recipients if encrypted else [],
        )

    def commit_blob(self) -> StoredBlob:
        """:meth:`commit`, as the stored blob."""
        size, sha = self.commit()
        return StoredBlob(self.key, size, sha)


class VerifiedReader(io.RawIOBase):
    """The content of a blob, checked: the sha256 (and size) of everything read must equal
    the expected ones when the end is reached, else the final read raises ArchiveError, so
    a writer fed from it never commits corrupt bytes."""

    def __init__(self, raw: IO[bytes], sha256: str, size: int | None, what: str) -> None:
        self._raw = raw
        self._expected = (sha256, size)
        self._hash = hashlib.sha256()
        self._size = 0
        self._what = what

    def readable(self) -> bool:
        return True

    def readinto(self, target: bytearray | memoryview) -> int:  # type: ignore[override]
        try:
            data = self._raw.read(len(target))
        except (zstandard.ZstdError, EOFError) as exc:
            raise ArchiveError(
                f"{self._what} is corrupt ({exc}): restore another snapshot"
            ) from exc
        if data:
            self._hash.update(data)
            self._size += len(data)
            memoryview(target)[: len(data)] = data
            return len(data)
        sha, size = self._expected
        if self._hash.hexdigest() != sha or (size is not None and self._size != size):
            raise ArchiveError(
                f"{self._what} does not match its sha256/size: the stored blob is damaged"
            )
        return 0

    def close(self) -> None:
        if not self.closed:
            self._raw.close()
        super().close()


def open_content(
    store: Storage, key: str, decrypt: DecryptHook | None, size: int | None = None
) -> IO[bytes]:
    """A readable stream of a blob's content, decrypted and decompressed, verified against
    the sha256 in its key (and ``size`` bytes when given) as it reaches the end.

    Raises:
        NotFound: the blob is missing.
        ArchiveError: encrypted and no ``decrypt`` (give --identity), or (while reading)
            corrupt or not matching its sha256.
    """
    sha, form, encrypted = parse_blob_key(key)
    if encrypted and decrypt is None:
        raise ArchiveError(
            "this file snapshot is age-encrypted: give --identity FILE (or "
            "PGVAULT_AGE_IDENTITY_FILE)"
        )
    stream: IO[bytes] = store.open_read(key)
    if encrypted:
        assert decrypt is not None
        stream = decrypt(stream)
    if form == "zstd":
        stream = zstandard.ZstdDecompressor().stream_reader(
            stream, read_across_frames=True, closefd=True
        )
    checked = VerifiedReader(stream, sha, size, f"blob {key}")
    return io.BufferedReader(checked, CHUNK)


def hash_stored(store: Storage, key: str) -> tuple[int, str]:
    """``(size, sha256)`` of a blob's stored bytes, read in chunks.

    Raises:
        NotFound: the blob is missing.
    """
    digest = hashlib.sha256()
    size = 0
    with store.open_read(key) as stream:
        while chunk := stream.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()
