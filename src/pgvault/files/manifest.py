"""Manifests and indexes: what a snapshot holds, as zstd-compressed JSON lines.

* The **manifest** (``<id>.manifest.zst``, age-encrypted to the set's recipients as
  ``.manifest.zst.age``): a header line, then one :class:`Entry` per object in key order
  (key, size, sha256, blob, content type, user metadata, headers, last modified,
  ETag, version, mode, mtime). It names the application's keys, so it is encrypted when
  the blobs are. Committed last: a snapshot without it does not exist.
* The **index** (``<id>.index.zst``, never encrypted): a header line with the snapshot's
  row, then one line per distinct blob (key, stored size, stored sha256). Retention's mark
  phase, ``files verify`` and copies read it without any key.

Both are streamed (never held whole in memory) and their stored bytes are hashed on the
way out; readers check that sha256 against the catalog before using a single line.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any

import zstandard

from pgvault.catalog.files import FileSnapshotRecord
from pgvault.dumps.layers import DecryptHook
from pgvault.errors import ArchiveError
from pgvault.files.blobs import CHUNK, LayeredWriter, StoredBlob, hash_stored, set_root
from pgvault.storage.base import Storage

MANIFEST_FORMAT = "pgvault-file-manifest"
INDEX_FORMAT = "pgvault-file-index"
VERSION = 1


def snapshot_keys(file_set: str, snapshot_id: str, encrypted: bool) -> tuple[str, str]:
    """``(manifest key, index key)`` of a snapshot."""
    base = f"{set_root(file_set)}snapshots/{snapshot_id}"
    return base + ".manifest.zst" + (".age" if encrypted else ""), base + ".index.zst"


@dataclass(slots=True)
class Entry:
    """One object of a snapshot. Sizes in bytes; ``modified`` aware UTC; ``blob`` the key
    of its content's blob; ``mode``/``mtime_ns`` for directory sources only."""

    key: str
    size: int
    sha256: str
    blob: str
    modified: datetime
    stored_size: int | None = None
    stored_sha256: str | None = None
    content_type: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    etag: str | None = None
    version_id: str | None = None
    mode: int | None = None
    mtime_ns: int | None = None

    def to_json(self) -> str:
        """One compact JSON line (empty fields left out)."""
        row: dict[str, Any] = {
            "key": self.key,
            "size": self.size,
            "sha256": self.sha256,
            "blob": self.blob,
            "modified": self.modified.isoformat(),
        }
        for name in ("stored_size", "stored_sha256", "content_type", "etag"):
            value = getattr(self, name)
            if value is not None:
                row[name] = value
        for name in ("metadata", "headers"):
            if getattr(self, name):
                row[name] = getattr(self, name)
        for name in ("version_id", "mode", "mtime_ns"):
            if getattr(self, name) is not None:
                row[name] = getattr(self, name)
        return json.dumps(row, separators=(",", ":"))

    @classmethod
    def from_json(cls, line: str) -> Entry:
        """Parse one line.

        Raises:
            ArchiveError: not an entry.
        """
        try:
            row = json.loads(line)
            return cls(
                key=str(row["key"]),
                size=int(row["size"]),
                sha256=str(row["sha256"]),
                blob=str(row["blob"]),
                modified=datetime.fromisoformat(row["modified"]),
                stored_size=row.get("stored_size"),
                stored_sha256=row.get("stored_sha256"),
                content_type=row.get("content_type"),
                metadata={str(k): str(v) for k, v in (row.get("metadata") or {}).items()},
                headers={str(k): str(v) for k, v in (row.get("headers") or {}).items()},
                etag=row.get("etag"),
                version_id=row.get("version_id"),
                mode=row.get("mode"),
                mtime_ns=row.get("mtime_ns"),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise ArchiveError(f"a manifest line is not a file entry ({exc})") from exc


class LinesWriter:
    """JSON lines -> zstd -> [local cache copy] -> [age] -> sha256 -> storage writer."""

    def __init__(
        self,
        store: Storage,
        key: str,
        header: dict[str, Any],
        recipients: list[Any] | None = None,
        cache: Path | None = None,
    ) -> None:
        self._cache_path = cache
        self._cache: IO[bytes] | None = None
        if cache is not None:
            cache.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(f"{cache}.partial", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            self._cache = os.fdopen(fd, "wb")
        self._layers = LayeredWriter(
            store.open_write(key), compress=True, recipients=recipients or [], tap=self._cache
        )
        self._buffer = io.StringIO()
        self.lines = 0
        self.write_line(json.dumps(header, separators=(",", ":")))

    def write_line(self, text: str) -> None:
        """Append one line (buffered to ~1 MiB before compression)."""
        self._buffer.write(text)
        self._buffer.write("\n")
        self.lines += 1
        if self._buffer.tell() >= CHUNK:
            self._flush()

    def _flush(self) -> None:
        data = self._buffer.getvalue().encode("utf-8", "surrogateescape")
        self._buffer = io.StringIO()
        if data:
            self._layers.write(data)

    def commit(self) -> tuple[int, str]:
        """Finish and make the object visible; returns its stored ``(size, sha256)``.

        Raises:
            StorageError: the write failed (nothing is visible).
        """
        try:
            self._flush()
        except BaseException:
            self.abort()
            raise
        stored = self._layers.commit()
        if self._cache is not None and self._cache_path is not None:
            self._cache.close()
            os.replace(f"{self._cache_path}.partial", self._cache_path)
            self._cache = None
        return stored

    def abort(self) -> None:
        """Discard everything written; never raises."""
        self._layers.abort()
        if self._cache is not None and self._cache_path is not None:
            self._cache.close()
            self._cache = None
            Path(f"{self._cache_path}.partial").unlink(missing_ok=True)


def manifest_header(record: FileSnapshotRecord) -> dict[str, Any]:
    """The manifest's first line."""
    return {
        "format": MANIFEST_FORMAT,
        "version": VERSION,
        "id": record.id,
        "file_set": record.file_set,
        "source": record.source,
        "consistency": record.consistency,
        "as_of": record.as_of.isoformat() if record.as_of else None,
    }


def write_index(
    store: Storage, record: FileSnapshotRecord, blobs: Iterator[StoredBlob]
) -> tuple[int, str]:
    """Store the snapshot's index (its row, then one line per blob); returns the stored
    ``(size, sha256)``.

    Raises:
        StorageError: the write failed.
    """
    header = {
        "format": INDEX_FORMAT,
        "version": VERSION,
        "snapshot": record.model_dump(mode="json"),
    }
    writer = LinesWriter(store, record.index_key, header)
    try:
        for blob in blobs:
            writer.write_line(
                json.dumps(
                    {
                        "blob": blob.key,
                        "stored_size": blob.stored_size,
                        "stored_sha256": blob.stored_sha256,
                    },
                    separators=(",", ":"),
                )
            )
    except BaseException:
        writer.abort()
        raise
    return writer.commit()


def check_stored(store: Storage, key: str, size: int | None, sha256: str | None) -> None:
    """Read a stored manifest or index whole and compare it with the catalog.

    Raises:
        NotFound: it is missing.
        ArchiveError: its size or sha256 differs (the snapshot cannot be trusted).
    """
    if sha256 is None or hash_stored(store, key) != (size, sha256):
        raise ArchiveError(
            f"{key} does not match the catalog (sha256/size): it was altered or damaged"
        )


def _lines(stream: IO[bytes]) -> Iterator[str]:
    reader = zstandard.ZstdDecompressor().stream_reader(
        stream, read_across_frames=True, closefd=True
    )
    text = io.TextIOWrapper(
        io.BufferedReader(reader, CHUNK), encoding="utf-8", errors="surrogateescape"
    )
    try:
        for line in text:
            if line.strip():
                yield line
    except zstandard.ZstdError as exc:
        raise ArchiveError(f"a manifest is corrupt ({exc})") from exc
    finally:
        text.close()


def _header(lines: Iterator[str], expected: str, snapshot_id: str) -> dict[str, Any]:
    try:
        header = json.loads(next(lines))
    except (StopIteration, ValueError) as exc:
        raise ArchiveError(f"{expected} of snapshot {snapshot_id} has no header") from exc
    found = header.get("id") or (header.get("snapshot") or {}).get("id")
    if header.get("format") != expected or found != snapshot_id:
        raise ArchiveError(f"{expected} of snapshot {snapshot_id} belongs to another snapshot")
    return dict(header)


def entries_from(stream: IO[bytes], snapshot_id: str) -> Iterator[Entry]:
    """The entries of a plaintext (zstd) manifest stream, in key order.

    Raises:
        ArchiveError: not the manifest of ``snapshot_id``, or a bad line.
    """
    lines = _lines(stream)
    _header(lines, MANIFEST_FORMAT, snapshot_id)
    for line in lines:
        yield Entry.from_json(line)


def open_entries(
    store: Storage, record: FileSnapshotRecord, decrypt: DecryptHook | None
) -> Iterator[Entry]:
    """The entries of a snapshot's stored manifest, after checking its sha256.

    Raises:
        NotFound: the manifest is missing.
        ArchiveError: altered or damaged, or encrypted and no ``decrypt`` given.
    """
    check_stored(store, record.manifest_key, record.manifest_size, record.manifest_sha256)
    stream = store.open_read(record.manifest_key)
    if record.encrypted:
        if decrypt is None:
            stream.close()
            raise ArchiveError(
                f"the manifest of file snapshot {record.id} is age-encrypted: give --identity FILE"
            )
        stream = decrypt(stream)
    return entries_from(stream, record.id)


def index_blobs(store: Storage, record: FileSnapshotRecord) -> Iterator[StoredBlob]:
    """The blobs a snapshot references (from its index, checked against the catalog).

    Raises:
        NotFound: the index is missing.
        ArchiveError: altered or damaged.
    """
    check_stored(store, record.index_key, record.index_size, record.index_sha256)
    lines = _lines(store.open_read(record.index_key))
    _header(lines, INDEX_FORMAT, record.id)
    for line in lines:
        try:
            row = json.loads(line)
            yield StoredBlob(str(row["blob"]), int(row["stored_size"]), row.get("stored_sha256"))
        except (ValueError, KeyError, TypeError) as exc:
            raise ArchiveError(
                f"a line of the index of snapshot {record.id} is bad ({exc})"
            ) from exc
