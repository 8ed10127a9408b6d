"""The catalog rows of physical backups and the WAL archive, and their queries.

* :class:`WalSegmentRecord`: one archived WAL segment (or timeline history file) of one
  cluster, keyed by the cluster's system identifier and the file name;
* :class:`PhysicalBackupRecord`: one base backup (``pg_basebackup``), full or incremental,
  with its WAL range, timeline and manifest (it is also the manifest stored beside it);
* :class:`RestorePointRecord`: a named restore point (``pg_create_restore_point``);
* :class:`WalStreamRecord`: the state of the ``pgvault wal stream`` supervising a database.

Times are aware UTC datetimes, sizes bytes, LSNs integers (bytes from the start of WAL).
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field

from pgvault.catalog.engine import select_rows, transaction, upsert
from pgvault.catalog.tables import physical_backups, restore_points, wal_segments, wal_streams
from pgvault.errors import NotFound

if TYPE_CHECKING:
    from pgvault.catalog import Catalog

PhysicalStatus = Literal["running", "completed", "failed", "interrupted", "deleted"]
PhysicalKind = Literal["full", "incremental"]
StreamStatus = Literal["streaming", "retrying", "stopped", "failed"]


class WalSegmentRecord(BaseModel):
    """One archived WAL file: ``name`` is a segment (24 hex digits) or ``N.history``."""

    system_identifier: str = Field(description="The cluster's pg_control system identifier.")
    name: str
    timeline: int
    segment_number: int | None = Field(default=None, description="XLogSegNo; None: history.")
    database: str = Field(description="Config name of the database whose server it came from.")
    storage: str
    storage_key: str
    size_bytes: int = Field(description="Stored (compressed, maybe encrypted) bytes.")
    sha256: str = Field(description="sha256 of the stored bytes.")
    wal_size_bytes: int = Field(description="Bytes of the WAL file itself.")
    wal_sha256: str = Field(description="sha256 of the WAL file itself (idempotent pushes).")
    compression: str = "zstd"
    encrypted: bool = False
    source: Literal["stream", "push"] = "stream"
    archived_at: datetime


class PhysicalBackupRecord(BaseModel):
    """One base backup; ``start_lsn``..``stop_lsn`` is the WAL it needs to be consistent."""

    model_config = ConfigDict(extra="ignore")

    id: str
    database: str
    server: str = Field(description="host:port of the server backed up.")
    environment: str | None = None
    kind: PhysicalKind = "full"
    parent_id: str | None = Field(
        default=None, description="The backup an incremental one is taken against."
    )
    status: PhysicalStatus = "running"
    trigger: str = "manual"
    storage: str
    storage_key: str
    manifest_key: str | None = Field(default=None, description="The stored backup_manifest.")
    size_bytes: int | None = None
    sha256: str | None = None
    manifest_sha256: str | None = None
    compression: str = "zstd"
    encrypted: bool = False
    server_version: str | None = None
    tool_version: str | None = Field(default=None, description="pg_basebackup's version.")
    system_identifier: str | None = None
    timeline: int | None = None
    segment_size: int | None = None
    start_lsn: int | None = None
    stop_lsn: int | None = None
    start_wal: str | None = None
    stop_wal: str | None = None
    started_at: datetime
    finished_at: datetime | None = Field(
        default=None, description="When pg_basebackup ended: the earliest recoverable time."
    )
    duration_seconds: float | None = None
    error: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    created_by: str | None = None
    runner: str | None = None
    verified_at: datetime | None = None
    verify_status: Literal["ok", "failed"] | None = None
    verify_detail: str | None = None
    pinned: bool = False


class RestorePointRecord(BaseModel):
    """A named restore point created by ``pgvault wal mark``."""

    id: int | None = None
    database: str
    system_identifier: str
    name: str
    lsn: int
    timeline: int
    created_at: datetime
    created_by: str | None = None


class WalStreamRecord(BaseModel):
    """What the stream supervising one database last said about itself."""

    database: str
    system_identifier: str | None = None
    slot: str
    status: StreamStatus
    runner: str | None = Field(default=None, description="host:pid of the streaming process.")
    started_at: datetime | None = None
    heartbeat_at: datetime | None = None
    restarts: int = 0
    last_error: str | None = None
    server_lsn: int | None = Field(default=None, description="Server's WAL position at the beat.")
    slot_retained_bytes: int | None = Field(
        default=None, description="WAL the server kept for the slot at the last heartbeat."
    )


# --- WAL segments -------------------------------------------------------------------------


def save_segment(catalog: Catalog, record: WalSegmentRecord) -> None:
    """Insert or replace the row of one archived WAL file."""
    key = {"system_identifier": record.system_identifier, "name": record.name}
    upsert(catalog, wal_segments, key, record.model_dump())


def get_segment(catalog: Catalog, system_identifier: str, name: str) -> WalSegmentRecord | None:
    """The row of one archived WAL file, or None."""
    c = wal_segments.c
    found = select_rows(
        catalog,
        sa.select(wal_segments).where(c.system_identifier == system_identifier, c.name == name),
    )
    return WalSegmentRecord.model_validate(found[0]) if found else None


def segments(
    catalog: Catalog,
    *,
    system_identifier: str | None = None,
    database: str | None = None,
    history: bool | None = None,
) -> list[WalSegmentRecord]:
    """Archived WAL files in WAL order (timeline, segment number; history files first).

    Args:
        history: True only history files, False only segments, None both.
    """
    c = wal_segments.c
    query = sa.select(wal_segments).order_by(
        c.system_identifier, c.timeline, c.segment_number.is_not(None), c.segment_number
    )
    if system_identifier is not None:
        query = query.where(c.system_identifier == system_identifier)
    if database is not None:
        query = query.where(c.database == database)
    if history is True:
        query = query.where(c.segment_number.is_(None))
    elif history is False:
        query = query.where(c.segment_number.is_not(None))
    return [WalSegmentRecord.model_validate(r) for r in select_rows(catalog, query)]


def newest_segment(catalog: Catalog, database: str) -> WalSegmentRecord | None:
    """The segment of ``database`` furthest along in WAL (highest timeline, then number)."""
    c = wal_segments.c
    query = (
        sa.select(wal_segments)
        .where(c.database == database, c.segment_number.is_not(None))
        .order_by(c.timeline.desc(), c.segment_number.desc())
        .limit(1)
    )
    found = select_rows(catalog, query)
    return WalSegmentRecord.model_validate(found[0]) if found else None


def count_segments(catalog: Catalog, database: str) -> int:
    """How many segments (not history files) of ``database`` are archived."""
    c = wal_segments.c
    query = sa.select(sa.func.count()).where(c.database == database, c.segment_number.is_not(None))
    with transaction(catalog) as conn:
        return int(conn.execute(query).scalar() or 0)


def delete_segment(catalog: Catalog, system_identifier: str, name: str) -> None:
    """Remove the row of one archived WAL file (after its object was deleted)."""
    c = wal_segments.c
    with transaction(catalog) as conn:
        conn.execute(
            wal_segments.delete().where(c.system_identifier == system_identifier, c.name == name)
        )


# --- physical backups ---------------------------------------------------------------------


def save_backup(catalog: Catalog, record: PhysicalBackupRecord) -> None:
    """Insert or replace the row of one base backup."""
    upsert(catalog, physical_backups, {"id": record.id}, record.model_dump())


def get_backup(catalog: Catalog, backup_id: str) -> PhysicalBackupRecord:
    """The base backup ``backup_id``.

    Raises:
        NotFound: no such id (the message suggests ``pgvault backup --physical --list``).
    """
    found = select_rows(
        catalog, sa.select(physical_backups).where(physical_backups.c.id == backup_id)
    )
    if not found:
        raise NotFound(
            f"no physical backup with id {backup_id!r}: run 'pgvault wal status' to see them"
        )
    return PhysicalBackupRecord.model_validate(found[0])


def list_backups(
    catalog: Catalog,
    *,
    database: str | None = None,
    status: PhysicalStatus | None = None,
    include_deleted: bool = False,
) -> list[PhysicalBackupRecord]:
    """Base backups, newest first."""
    c = physical_backups.c
    query = sa.select(physical_backups).order_by(c.started_at.desc(), c.id.desc())
    if database is not None:
        query = query.where(c.database == database)
    if status is not None:
        query = query.where(c.status == status)
    elif not include_deleted:
        query = query.where(c.status != "deleted")
    return [PhysicalBackupRecord.model_validate(r) for r in select_rows(catalog, query)]


# --- restore points and streams -----------------------------------------------------------


def add_restore_point(catalog: Catalog, record: RestorePointRecord) -> None:
    """Record a named restore point."""
    row: dict[str, Any] = record.model_dump(exclude={"id"})
    with transaction(catalog) as conn:
        conn.execute(restore_points.insert().values(**row))


def restore_points_of(
    catalog: Catalog, database: str, name: str | None = None
) -> list[RestorePointRecord]:
    """Restore points of ``database`` (only those called ``name`` if given), newest first."""
    c = restore_points.c
    query = sa.select(restore_points).where(c.database == database)
    if name is not None:
        query = query.where(c.name == name)
    query = query.order_by(c.created_at.desc(), c.id.desc())
    return [RestorePointRecord.model_validate(r) for r in select_rows(catalog, query)]


def save_stream(catalog: Catalog, record: WalStreamRecord) -> None:
    """Insert or replace the state of the stream of ``record.database``."""
    upsert(catalog, wal_streams, {"database": record.database}, record.model_dump())


def get_stream(catalog: Catalog, database: str) -> WalStreamRecord | None:
    """The last recorded state of the stream of ``database``, or None."""
    found = select_rows(catalog, sa.select(wal_streams).where(wal_streams.c.database == database))
    return WalStreamRecord.model_validate(found[0]) if found else None
