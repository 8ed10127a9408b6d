"""The WAL archive: storing, finding and fetching WAL segments and timeline history files.

Each WAL file is stored as ``wal/<system identifier>/<timeline>/<name>.zst[.age]``
(zstd, then age when the database has recipients), its stored sha256 and size recorded in
the catalog only after the object was committed and its size checked; the sha256 of the
WAL file itself is recorded too, so archiving the same file again is a no-op and archiving
different bytes under a name already stored is refused (what PostgreSQL's documentation asks
of an ``archive_command``: "Continuous Archiving", "Setting Up WAL Archiving").

A gap is a segment number missing between two archived segments of one timeline: a
recovery cannot cross it, so it is reported (never skipped).
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pgvault import storage
from pgvault.catalog import Catalog
from pgvault.catalog import physical as rows
from pgvault.catalog.physical import WalSegmentRecord
from pgvault.config.settings import Settings
from pgvault.databases import DatabaseTarget
from pgvault.dumps.encryption import parse_recipients
from pgvault.dumps.layers import DecryptHook
from pgvault.errors import ArchiveError, ConfigError, StorageError
from pgvault.physical import walnames
from pgvault.physical.stream import ReadChain, WriteChain
from pgvault.storage import Storage

log = logging.getLogger(__name__)

CHUNK = 1024 * 1024  # bytes


def wal_storage(settings: Settings, target: DatabaseTarget) -> Storage:
    """The storage target of ``target``'s WAL archive and base backups: the first of
    ``wal_storage``, else of ``storage``, else the default target."""
    db = target.settings
    chosen = next(iter(db.wal_storage or db.storage), None)
    return storage.resolve(settings, chosen)


def recipients_of(settings: Settings, target: DatabaseTarget) -> list[str]:
    """The age recipients of ``target``'s physical backups and WAL (checked).

    Raises:
        ConfigError: a recipient is not an ``age1...`` key.
    """
    chosen = list(target.settings.encrypt_to or settings.age_recipients)
    parse_recipients(chosen)
    return chosen


def segment_key(system_identifier: str, name: str, *, encrypted: bool) -> str:
    """``wal/<sysid>/<timeline>/<name>.zst[.age]`` for a segment or history file name."""
    timeline = walnames.timeline_of(name)
    return f"wal/{system_identifier}/{timeline:08X}/{name}.zst" + (".age" if encrypted else "")


@dataclass(frozen=True)
class Archive:
    """Where one database's WAL goes: its cluster, storage target and recipients."""

    database: str
    system_identifier: str
    store: Storage
    recipients: tuple[str, ...]
    segment_size: int = walnames.DEFAULT_SEGMENT_SIZE


def open_archive(
    settings: Settings,
    target: DatabaseTarget,
    system_identifier: str,
    segment_size: int = walnames.DEFAULT_SEGMENT_SIZE,
) -> Archive:
    """The :class:`Archive` of ``target`` for the cluster ``system_identifier``.

    Raises:
        ConfigError: bad recipients or storage URL.
    """
    return Archive(
        database=target.name,
        system_identifier=system_identifier,
        store=wal_storage(settings, target),
        recipients=tuple(recipients_of(settings, target)),
        segment_size=segment_size,
    )


def file_sha256(path: Path) -> tuple[int, str]:
    """``(size in bytes, sha256 hex)`` of a local file.

    Raises:
        StorageError: it cannot be read.
    """
    digest = hashlib.sha256()
    size = 0
    try:
        with open(path, "rb") as handle:
            while chunk := handle.read(CHUNK):
                digest.update(chunk)
                size += len(chunk)
    except OSError as exc:
        raise StorageError(f"cannot read WAL file {path}: {exc.strerror}") from exc
    return size, digest.hexdigest()


def _number(name: str, segment_size: int) -> int | None:
    if walnames.is_history(name):
        return None
    return walnames.parse_segment(name, segment_size).number


def archive_file(
    catalog: Catalog,
    archive: Archive,
    path: Path,
    *,
    source: Literal["stream", "push"],
) -> tuple[WalSegmentRecord, bool]:
    """Compress, [encrypt], upload, check and record one WAL file.

    Returns:
        ``(record, stored)``: ``stored`` is False when the same bytes were already archived.

    Raises:
        ConfigError: ``path`` is not named like a WAL segment or history file.
        ArchiveError: the name is archived already with different bytes (never overwritten).
        StorageError: the upload failed (nothing recorded; the caller keeps the file).
    """
    name = path.name
    number = _number(name, archive.segment_size)
    existing = rows.get_segment(catalog, archive.system_identifier, name)
    if existing is not None:
        size, digest = file_sha256(path)
        if (size, digest) == (existing.wal_size_bytes, existing.wal_sha256):
            return existing, False
        if number is not None:
            raise ArchiveError(
                f"WAL segment {name} is already archived with different contents: "
                "two servers share one system identifier, or the file is damaged"
            )
        log.info("timeline history file %s changed; storing the new one", name)
    key = segment_key(archive.system_identifier, name, encrypted=bool(archive.recipients))
    chain = WriteChain(archive.store, key, archive.recipients)
    digest_raw = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            while chunk := handle.read(CHUNK):
                digest_raw.update(chunk)
                chain.write(chunk)
        info = chain.commit()
    except OSError as exc:
        chain.abort()
        raise StorageError(f"cannot read WAL file {path}: {exc.strerror}") from exc
    except BaseException:
        chain.abort()
        raise
    if info.size != chain.size:
        raise StorageError(f"stored {key} holds {info.size} bytes, {chain.size} were written")
    record = WalSegmentRecord(
        system_identifier=archive.system_identifier,
        name=name,
        timeline=walnames.timeline_of(name),
        segment_number=number,
        database=archive.database,
        storage=archive.store.name,
        storage_key=key,
        size_bytes=chain.size,
        sha256=chain.sha256,
        wal_size_bytes=chain.fed,
        wal_sha256=digest_raw.hexdigest(),
        encrypted=bool(archive.recipients),
        source=source,
        archived_at=datetime.now(UTC),
    )
    rows.save_segment(catalog, record)
    log.debug("archived %s (%d -> %d bytes)", name, chain.fed, chain.size)
    return record, True


def find(
    catalog: Catalog, database: str, name: str, system_identifier: str | None = None
) -> WalSegmentRecord | None:
    """The archived WAL file ``name`` of ``database`` (newest cluster first when several
    clusters of that database archived the same name), or None."""
    if system_identifier is not None:
        return rows.get_segment(catalog, system_identifier, name)
    found = [r for r in rows.segments(catalog, database=database) if r.name == name]
    return max(found, key=lambda r: r.archived_at) if found else None


def open_segment(
    settings: Settings, record: WalSegmentRecord, decrypt: DecryptHook | None
) -> ReadChain:
    """A readable stream of the WAL file itself (call ``check()`` at its end).

    Raises:
        NotFound: the object is gone from storage.
        ArchiveError: encrypted and no identity given.
    """
    store = storage.resolve(settings, record.storage)
    return ReadChain(
        store.open_read(record.storage_key),
        encrypted=record.encrypted,
        decrypt=decrypt,
        size=record.size_bytes,
        sha256=record.sha256,
        label=f"archived WAL file {record.name}",
    )


def fetch_to(
    settings: Settings, record: WalSegmentRecord, dest: Path, decrypt: DecryptHook | None
) -> None:
    """Write the WAL file of ``record`` to ``dest`` (via ``dest.pgvault-partial``, renamed
    only after the stored bytes matched the catalog and the size matched the WAL file's).

    Raises:
        NotFound: the object is missing from storage.
        ArchiveError: corrupt, wrong size, or encrypted without an identity.
        StorageError: ``dest`` cannot be written.
    """
    partial = dest.with_name(dest.name + ".pgvault-partial")
    try:
        with open_segment(settings, record, decrypt) as chain, open(partial, "wb") as out:
            written = 0
            while chunk := chain.read(CHUNK):
                out.write(chunk)
                written += len(chunk)
            chain.check()
        if written != record.wal_size_bytes:
            raise ArchiveError(
                f"archived WAL file {record.name} decompressed to {written} bytes, "
                f"expected {record.wal_size_bytes}"
            )
        os.replace(partial, dest)
    except OSError as exc:
        raise StorageError(f"cannot write {dest}: {exc.strerror}") from exc
    finally:
        partial.unlink(missing_ok=True)


@dataclass(frozen=True)
class Gap:
    """Segments missing from the archive of one timeline, ``first`` to ``last`` inclusive."""

    system_identifier: str
    timeline: int
    first: str
    last: str
    after_segment: str

    def describe(self) -> str:
        """``WAL 000000010000000000000005 to ...07 missing (after ...04)``."""
        span = self.first if self.first == self.last else f"{self.first} to {self.last}"
        return f"WAL {span} missing from the archive (after {self.after_segment})"


def gaps(
    catalog: Catalog,
    *,
    database: str | None = None,
    system_identifier: str | None = None,
    segment_size: int = walnames.DEFAULT_SEGMENT_SIZE,
) -> list[Gap]:
    """Every gap between archived segments, per cluster and timeline, oldest first."""
    by_line: dict[tuple[str, int], list[int]] = {}
    for record in rows.segments(
        catalog, database=database, system_identifier=system_identifier, history=False
    ):
        assert record.segment_number is not None
        by_line.setdefault((record.system_identifier, record.timeline), []).append(
            record.segment_number
        )
    found = []
    for (sysid, timeline), numbers in sorted(by_line.items()):
        for first, last in walnames.missing_between(sorted(numbers)):
            found.append(
                Gap(
                    sysid,
                    timeline,
                    walnames.Segment(timeline, first).name(segment_size),
                    walnames.Segment(timeline, last).name(segment_size),
                    walnames.Segment(timeline, first - 1).name(segment_size),
                )
            )
    return found


def require_segment_name(name: str) -> str:
    """``name`` if it is a WAL segment or history file name (never a path).

    Raises:
        ConfigError: anything else (so a request can never name a place on disk).
    """
    if not (walnames.is_segment(name) or walnames.is_history(name)):
        raise ConfigError(
            f"{name!r} is not a WAL file name: expected 24 hex digits or NNNNNNNN.history"
        )
    return name
