"""The catalog rows of file snapshots (``file_snapshots``, ``file_snapshot_copies``).

A :class:`FileSnapshotRecord` is one snapshot of a file set: ``running`` while it copies,
``completed`` once its manifest is committed, else ``failed`` or ``interrupted``; ``deleted``
after retention or ``files delete`` removed its manifest (the row stays for history). The
entries themselves (keys, sizes, sha256) live in the manifest in storage, never here.
Times are aware UTC datetimes, sizes bytes, durations seconds.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any, Literal

import sqlalchemy as sa
from pydantic import BaseModel, Field
from sqlalchemy.engine import Connection
from sqlalchemy.exc import SQLAlchemyError

from pgvault.catalog import Catalog
from pgvault.catalog.engine import row_dicts
from pgvault.catalog.tables import file_snapshot_copies, file_snapshots
from pgvault.errors import CatalogError, NotFound

SnapshotStatus = Literal["running", "completed", "failed", "interrupted", "deleted"]
SnapshotTrigger = Literal["manual", "scheduled", "linked", "pre-restore"]
Consistency = Literal["versioned", "window", "directory"]


class FileSnapshotRecord(BaseModel):
    """One snapshot of a file set (its catalog row; also the header of its stored index)."""

    id: str
    file_set: str = Field(description="The [files.NAME] the snapshot is of.")
    source: str = Field(description="What was listed: s3://bucket/prefix or a directory.")
    storage: str = Field(description="Storage target name or URL holding blobs and manifest.")
    manifest_key: str
    index_key: str = Field(description="Key of the plain list of referenced blobs.")
    manifest_sha256: str | None = Field(default=None, description="sha256 of the stored bytes.")
    manifest_size: int | None = None
    index_sha256: str | None = None
    index_size: int | None = None
    status: SnapshotStatus = "running"
    trigger: SnapshotTrigger = "manual"
    backup_id: str | None = Field(default=None, description="The database backup it is linked to.")
    environment: str | None = None
    encrypted: bool = False
    consistency: Consistency = Field(
        default="window",
        description="versioned: object versions as of ``as_of``; window: objects as listed "
        "from ``as_of`` on (deletions during the run may be missing); directory: a local tree.",
    )
    as_of: datetime | None = None
    objects: int | None = None
    bytes: int | None = Field(default=None, description="Total size of the objects, bytes.")
    copied_objects: int | None = Field(
        default=None, description="Objects read from the source because new or changed."
    )
    copied_bytes: int | None = None
    stored_blobs: int | None = Field(default=None, description="New blobs written to storage.")
    stored_bytes: int | None = Field(default=None, description="Bytes of those blobs as stored.")
    detail: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    pinned: bool = False
    started_at: datetime
    finished_at: datetime | None = None
    duration_seconds: float | None = None
    error: str | None = None
    created_by: str | None = None
    runner: str | None = Field(default=None, description="host:pid of the process running it.")
    verified_at: datetime | None = None
    verify_status: Literal["ok", "failed"] | None = None
    verify_detail: str | None = None


class FileSnapshotCopy(BaseModel):
    """A snapshot copied to another storage target (its blobs, index and manifest)."""

    snapshot_id: str
    storage: str
    status: Literal["completed", "failed", "deleted"]
    copied_blobs: int | None = None
    copied_bytes: int | None = None
    copied_at: datetime | None = None
    error: str | None = None


@contextmanager
def _connection(catalog: Catalog) -> Iterator[Connection]:
    try:
        with catalog.engine.begin() as conn:
            yield conn
    except SQLAlchemyError as exc:
        raise CatalogError(
            f"catalog query on file snapshots failed: {exc.__cause__ or exc}"
        ) from exc


def _save(catalog: Catalog, table: sa.Table, where: Any, row: dict[str, Any]) -> None:
    with _connection(catalog) as conn:
        if conn.execute(table.update().where(where).values(**row)).rowcount == 0:
            conn.execute(table.insert().values(**row))


def _select(catalog: Catalog, query: sa.Select[Any]) -> list[dict[str, Any]]:
    with _connection(catalog) as conn:
        return row_dicts(conn.execute(query))


def save_snapshot(catalog: Catalog, record: FileSnapshotRecord) -> None:
    """Insert or replace the row of ``record.id``.

    Raises:
        CatalogError: the catalog cannot be written.
    """
    _save(catalog, file_snapshots, file_snapshots.c.id == record.id, record.model_dump())


def get_snapshot(catalog: Catalog, snapshot_id: str) -> FileSnapshotRecord:
    """The snapshot ``snapshot_id``.

    Raises:
        NotFound: no such id (the message suggests ``pgvault files list``).
    """
    found = _select(catalog, sa.select(file_snapshots).where(file_snapshots.c.id == snapshot_id))
    if not found:
        raise NotFound(
            f"no file snapshot with id {snapshot_id!r}: run 'pgvault files list' to see the ids"
        )
    return FileSnapshotRecord.model_validate(found[0])


def list_snapshots(
    catalog: Catalog,
    *,
    file_set: str | None = None,
    statuses: Sequence[str] = (),
    backup_id: str | None = None,
    source: str | None = None,
    storage: str | None = None,
    include_deleted: bool = False,
    limit: int | None = None,
    offset: int = 0,
) -> list[FileSnapshotRecord]:
    """Snapshots newest first, filtered; ``deleted`` ones only when asked by ``statuses``
    or ``include_deleted``."""
    c = file_snapshots.c
    query = sa.select(file_snapshots).order_by(c.started_at.desc(), c.id.desc())
    for column, value in ((c.file_set, file_set), (c.backup_id, backup_id)):
        if value is not None:
            query = query.where(column == value)
    for column, value in ((c.source, source), (c.storage, storage)):
        if value is not None:
            query = query.where(column == value)
    if statuses:
        query = query.where(c.status.in_(list(statuses)))
    elif not include_deleted:
        query = query.where(c.status != "deleted")
    query = query.limit(limit).offset(offset) if limit is not None else query.offset(offset)
    return [FileSnapshotRecord.model_validate(r) for r in _select(catalog, query)]


def newest_completed(
    catalog: Catalog, file_set: str, source: str, storage: str
) -> FileSnapshotRecord | None:
    """The newest completed snapshot of ``file_set`` listed from ``source`` into
    ``storage``: the base an incremental snapshot compares against."""
    found = list_snapshots(
        catalog,
        file_set=file_set,
        source=source,
        storage=storage,
        statuses=("completed",),
        limit=1,
    )
    return found[0] if found else None


def linked_snapshots(
    catalog: Catalog, backup_ids: Sequence[str]
) -> dict[str, list[FileSnapshotRecord]]:
    """The snapshots linked to each of ``backup_ids`` (not deleted), newest first; ids
    without any are absent."""
    if not backup_ids:
        return {}
    c = file_snapshots.c
    query = (
        sa.select(file_snapshots)
        .where(c.backup_id.in_(list(backup_ids)) & (c.status != "deleted"))
        .order_by(c.started_at.desc())
    )
    found: dict[str, list[FileSnapshotRecord]] = {}
    for row in _select(catalog, query):
        record = FileSnapshotRecord.model_validate(row)
        found.setdefault(str(record.backup_id), []).append(record)
    return found


def file_set_names(catalog: Catalog) -> list[str]:
    """Every file set that has a row, sorted."""
    query = sa.select(file_snapshots.c.file_set).distinct()
    return sorted(str(r["file_set"]) for r in _select(catalog, query))


def counts_by_status(catalog: Catalog) -> list[tuple[str, str, int]]:
    """``(file_set, status, count)`` of every row (for the metrics)."""
    c = file_snapshots.c
    query = sa.select(c.file_set, c.status, sa.func.count().label("n")).group_by(
        c.file_set, c.status
    )
    return [(str(r["file_set"]), str(r["status"]), int(r["n"])) for r in _select(catalog, query)]


def save_copy(catalog: Catalog, copy: FileSnapshotCopy) -> None:
    """Insert or replace the row of one copy."""
    t = file_snapshot_copies.c
    where = (t.snapshot_id == copy.snapshot_id) & (t.storage == copy.storage)
    _save(catalog, file_snapshot_copies, where, copy.model_dump())


def copies_of(catalog: Catalog, snapshot_id: str) -> list[FileSnapshotCopy]:
    """The copies of one snapshot."""
    query = sa.select(file_snapshot_copies).where(file_snapshot_copies.c.snapshot_id == snapshot_id)
    return [FileSnapshotCopy.model_validate(r) for r in _select(catalog, query)]
