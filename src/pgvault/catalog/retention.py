"""Catalog rows of retention: what one database's retention decides on, and its holds.

:func:`history` is the one query feeding :func:`pgvault.operations.retention_copies.plan`:
the database's live rows, read slim off an index, and their copies. After a prune those are
what the policy keeps, so the read is bounded by the policy, not by the whole history. A
hold (:class:`HoldRecord`) marks a database whose retention deletes nothing for now, so its
warning is notified once. Only this package runs SQL.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

import sqlalchemy as sa
from pydantic import BaseModel

from pgvault.catalog.engine import select_rows, transaction, upsert
from pgvault.catalog.records import BackupCopy, BackupRecord
from pgvault.catalog.tables import retention_holds

if TYPE_CHECKING:
    from pgvault.catalog import Catalog


@dataclass(frozen=True)
class RetentionHistory:
    """The rows retention decides on for one database.

    Attributes:
        backups: the database's rows that are not ``deleted``, newest first.
        copies: ``{backup id: its copy rows}`` (any status) for those rows.
    """

    backups: list[BackupRecord]
    copies: dict[str, list[BackupCopy]]


def history(catalog: Catalog, database: str) -> RetentionHistory:
    """Every live (not ``deleted``) row of ``database``, newest first, and their copies.

    The rows hold only what retention decides on
    (:data:`pgvault.catalog.stats.RETENTION_COLUMNS`): read a row whole
    (:meth:`~pgvault.catalog.Catalog.get_backup`) before changing it.

    Raises:
        CatalogError: the catalog cannot be read.
    """
    rows = catalog.retention_rows(database)
    return RetentionHistory(rows, catalog.copies_of([r.id for r in rows]))


def live_targets(record: BackupRecord, copies: Sequence[BackupCopy]) -> list[str]:
    """The targets holding a completed backup: its primary (``record.storage``) first, then
    each ``completed`` copy, in catalog order, without repeats."""
    found = [record.storage]
    for copy in copies:
        if copy.status == "completed" and copy.storage not in found:
            found.append(copy.storage)
    return found


class HoldRecord(BaseModel):
    """A database whose retention is held.

    Attributes:
        database: the database's name.
        reason: why (one line, e.g. ``newest backup attempt 2026... failed``).
        since: when a prune first found the hold (UTC).
        notified_at: when the ``retention_held`` notification went out (UTC), else None.
    """

    database: str
    reason: str
    since: datetime
    notified_at: datetime | None = None


def get_hold(catalog: Catalog, database: str) -> HoldRecord | None:
    """The hold of ``database``, or None.

    Raises:
        CatalogError: the catalog cannot be read.
    """
    query = sa.select(retention_holds).where(retention_holds.c.database == database)
    found = select_rows(catalog, query)
    return HoldRecord.model_validate(found[0]) if found else None


def save_hold(catalog: Catalog, hold: HoldRecord) -> None:
    """Insert or replace the hold of ``hold.database``.

    Raises:
        CatalogError: the catalog cannot be written.
    """
    upsert(catalog, retention_holds, {"database": hold.database}, hold.model_dump())


def clear_hold(catalog: Catalog, database: str) -> bool:
    """Remove the hold of ``database``; returns whether there was one.

    Raises:
        CatalogError: the catalog cannot be written.
    """
    where = retention_holds.c.database == database
    with transaction(catalog) as conn:
        return bool(conn.execute(retention_holds.delete().where(where)).rowcount)
