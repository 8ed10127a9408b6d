"""One-shot WAL operations: ``wal push`` (an ``archive_command``), ``wal fetch`` (a
``restore_command``) and ``wal mark`` (a named restore point).

``archive_command = 'pgvault wal push %p --database app'`` exits 0 only once the segment is
stored and recorded; pushing a segment already stored with the same sha256 is a no-op,
with a different one an error (PostgreSQL then retries and warns, never loses the file).
``restore_command = 'pgvault wal fetch %f %p --database app'`` exits 1 when the file is not
archived, which recovery reads as the end of the archive.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from pgvault.catalog import Catalog
from pgvault.catalog import physical as rows
from pgvault.catalog.physical import RestorePointRecord, WalSegmentRecord
from pgvault.config.settings import Settings
from pgvault.databases import DatabaseTarget
from pgvault.dumps.layers import DecryptHook
from pgvault.errors import ConfigError, NotFound
from pgvault.physical import archive as wal_archive
from pgvault.physical import serverinfo
from pgvault.physical.receiver import require_pitr


def push(
    settings: Settings, catalog: Catalog, target: DatabaseTarget, path: Path
) -> tuple[WalSegmentRecord, bool]:
    """Archive the WAL file at ``path`` (relative to the data directory when PostgreSQL runs
    the command there). Returns ``(record, stored)``; ``stored`` False: it was there already.

    Raises:
        ConfigError: pitr is off, or ``path`` is not a WAL file.
        ArchiveError: the name is archived with different bytes.
        ConnectionFailed: the server (asked for its system identifier) is unreachable.
        StorageError: the upload failed.
    """
    require_pitr(target)
    wal_archive.require_segment_name(path.name)
    if not path.is_file():
        raise ConfigError(f"WAL file {path} does not exist")
    identity = serverinfo.identify(target.conn)
    archive = wal_archive.open_archive(
        settings, target, identity.system_identifier, identity.segment_size
    )
    return wal_archive.archive_file(catalog, archive, path, source="push")


def fetch(
    settings: Settings,
    catalog: Catalog,
    database: str,
    name: str,
    dest: Path,
    decrypt: DecryptHook | None,
    system_identifier: str | None = None,
) -> WalSegmentRecord:
    """Write the archived WAL file ``name`` of ``database`` to ``dest`` (checked first).

    Raises:
        ConfigError: ``name`` is not a WAL file name.
        NotFound: it is not in the archive (recovery's "end of archive").
        ArchiveError: corrupt or encrypted without an identity.
    """
    wal_archive.require_segment_name(name)
    record = wal_archive.find(catalog, database, name, system_identifier)
    if record is None:
        raise NotFound(f"WAL file {name} is not in the archive of {database}")
    wal_archive.fetch_to(settings, record, dest, decrypt)
    return record


def mark(
    catalog: Catalog, target: DatabaseTarget, name: str, created_by: str | None = None
) -> RestorePointRecord:
    """Create the restore point ``name`` on the server and record it (its LSN, timeline).

    Raises:
        ConfigError: pitr is off, or the name is empty or over 63 bytes.
        DatabaseError: the role may not call ``pg_create_restore_point``.
    """
    require_pitr(target)
    if not name or len(name.encode()) > 63:
        raise ConfigError("a restore point name has 1 to 63 bytes")
    identity = serverinfo.identify(target.conn)
    lsn, timeline = serverinfo.create_restore_point(target.conn, name)
    record = RestorePointRecord(
        database=target.name,
        system_identifier=identity.system_identifier,
        name=name,
        lsn=lsn,
        timeline=timeline,
        created_at=datetime.now(UTC),
        created_by=created_by,
    )
    rows.add_restore_point(catalog, record)
    return record
