"""Catalog rows of retention: what one database's retention decides on, and its holds.

:func:`history` is the one query feeding :func:`pgvault.operations.retention_copies.plan`:
the database's live rows, read slim off an index, and their copies. After a prune those are
what the policy keeps, so the read is bounded by the policy, not by the whole history;
with a horizon (``young_after``) the completed backups a ``max_age_days`` rule keeps anyway
are read only as far back as the newest ones decide the counting rules. A
hold (:class:`HoldRecord`) marks a database whose retention deletes nothing for now, so its
warning is notified once. Only this package runs SQL.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from pydantic import BaseModel

from pgvault.catalog.engine import row_dicts, select_rows, transaction, upsert
from pgvault.catalog.records import BackupCopy, BackupRecord
from pgvault.catalog.tables import backups, retention_holds

if TYPE_CHECKING:
    from pgvault.catalog import Catalog


RETENTION_COLUMNS = (
    "id",
    "database",
    "dbname",
    "server",
    "environment",
    "trigger",
    "status",
    "storage",
    "storage_key",
    "size_bytes",
    "started_at",
    "labels",
    "pinned",
)
"""The columns of :func:`history`: what retention decides on and what a
prune report shows."""


@dataclass(frozen=True)
class RetentionHistory:
    """The rows retention decides on for one database.

    Attributes:
        backups: the database's rows that are not ``deleted``, newest first.
        copies: ``{backup id: its copy rows}`` (any status) for those rows.
        unlisted: how many *young plain* rows (see :func:`history`) were left out.
    """

    backups: list[BackupRecord]
    copies: dict[str, list[BackupCopy]]
    unlisted: int = 0


FIRST_PAGE = 128
"""How many start times of young plain rows :func:`history` reads first (twice as many each
page after that)."""


def history(
    catalog: Catalog,
    database: str,
    *,
    young_after: datetime | None = None,
    keep: int = 1,
    enough: Callable[[Sequence[datetime]], bool] | None = None,
) -> RetentionHistory:
    """The live (not ``deleted``) rows of ``database``, newest first, and their copies.

    The rows hold only what retention decides on (:data:`RETENTION_COLUMNS`): read a row
    whole (:meth:`~pgvault.catalog.Catalog.get_backup`) before changing it.

    Args:
        young_after: a horizon (UTC). Completed, unpinned, non-``pre-restore`` rows
            started after it are *young plain* rows. Their start times are read newest
            first, a page at a time (:data:`FIRST_PAGE`, then twice as many), until
            ``enough`` of them returns True; then only the ``keep`` newest of them are read
            as rows and the others counted in ``unlisted``, while every other live row is
            read. When ``enough`` never says so, every live row is read. None: every live
            row is read.
        keep: how many of the newest young plain rows are read as rows.
        enough: says whether the start times of the newest young plain rows read so far
            (newest first, UTC) show every row the caller must decide; required with
            ``young_after``.

    Raises:
        CatalogError: the catalog cannot be read.
    """
    c = backups.c
    if young_after is None or enough is None:
        rows = _slim(catalog, sa.and_(c.database == database, c.status != "deleted"))
        return RetentionHistory(rows, catalog.copies_of([r.id for r in rows]))
    at = {"database": database, "young_after": young_after}
    with transaction(catalog) as conn:
        times = _young_times(conn, at, enough)
        if times is None:  # the rules may reach past every young row: read them all
            return history(catalog, database)
        others = list({r.id: r for r in _records(conn.execute(_OTHERS, at))}.values())
        newest = _records(conn.execute(_PLAIN_ROWS, {**at, "limit": keep}))
        total = int(conn.execute(_YOUNG_COUNT, at).scalar_one())
    exempt = sum(1 for r in others if r.status == "completed" and r.started_at > young_after)
    rows = sorted([*newest, *others], key=lambda r: (r.started_at, r.id), reverse=True)
    copies = catalog.copies_of([r.id for r in rows])
    return RetentionHistory(rows, copies, total - exempt - len(newest))


def _statements() -> dict[str, Any]:
    """The bounded read's statements, built once (``:database``, ``:young_after``, ...)."""
    c = backups.c
    live = sa.and_(c.database == sa.bindparam("database"), c.status != "deleted")
    completed = c.status == "completed"
    young = sa.and_(completed, c.started_at > sa.bindparam("young_after"))
    plain = sa.and_(live, young, c.pinned == sa.false(), c.trigger != "pre-restore")
    newest_first = (c.started_at.desc(), c.id.desc())
    columns = [c[name] for name in RETENTION_COLUMNS]
    parts = (  # every live row but the young plain ones; each part an index seek
        c.status.in_(("failed", "interrupted", "running")),
        sa.and_(completed, c.started_at <= sa.bindparam("young_after")),
        sa.and_(completed, c.pinned == sa.true()),
        sa.and_(completed, c.trigger == "pre-restore"),
    )
    # UNION ALL (a row may be in two parts: pinned and old): PostgreSQL cannot compare json
    union = sa.union_all(*(sa.select(*columns).where(live, part) for part in parts)).subquery()
    below = sa.or_(
        c.started_at < sa.bindparam("last_at"),
        sa.and_(c.started_at == sa.bindparam("last_at"), c.id < sa.bindparam("last_id")),
    )
    times = sa.select(c.started_at, c.id).where(plain).order_by(*newest_first)
    return {
        # one OR of the parts would scan the database's rows: a union seeks each
        "others": sa.select(union).order_by(union.c.started_at.desc(), union.c.id.desc()),
        "plain_rows": sa.select(*columns)
        .where(plain)
        .order_by(*newest_first)
        .limit(sa.bindparam("limit")),
        "young_count": sa.select(sa.func.count()).select_from(backups).where(live, young),
        "first_times": times.limit(sa.bindparam("limit")),
        "next_times": times.where(below).limit(sa.bindparam("limit")),
    }


_BUILT = _statements()
_OTHERS, _PLAIN_ROWS, _YOUNG_COUNT = _BUILT["others"], _BUILT["plain_rows"], _BUILT["young_count"]


def _records(result: sa.CursorResult[Any]) -> list[BackupRecord]:
    return [BackupRecord.model_validate(row) for row in row_dicts(result)]


def _young_times(
    conn: sa.Connection,
    at: dict[str, Any],
    enough: Callable[[Sequence[datetime]], bool],
) -> list[datetime] | None:
    """The start times of the newest young plain rows, read by pages (keyset: each page
    starts below the last one read) until ``enough`` says so; None when it never does."""
    found: list[datetime] = []
    params = {**at, "limit": FIRST_PAGE}
    query = _BUILT["first_times"]
    while True:
        page = conn.execute(query, params).all()
        found += [row[0] for row in page]
        if enough(found):
            return found
        if len(page) < params["limit"]:
            return None
        last_at, last_id = page[-1]
        params = {**at, "limit": params["limit"] * 2, "last_at": last_at, "last_id": last_id}
        query = _BUILT["next_times"]


def _slim(catalog: Catalog, where: Any, limit: int | None = None) -> list[BackupRecord]:
    """The :data:`RETENTION_COLUMNS` of the rows ``where`` holds, newest first."""
    c = backups.c
    query = (
        sa.select(*(c[name] for name in RETENTION_COLUMNS))
        .where(where)
        .order_by(c.started_at.desc(), c.id.desc())
        .limit(limit)
    )
    with transaction(catalog) as conn:
        return [BackupRecord.model_validate(row) for row in row_dicts(conn.execute(query))]


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
