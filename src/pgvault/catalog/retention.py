"""Catalog rows of retention: what one database's retention decides on, and its holds.

:func:`histories` is the one read feeding :func:`pgvault.operations.retention_copies.plan`:
each database's live rows, read slim off an index, and their copies, for many databases in
a few statements (each a UNION ALL of index seeks or an ``IN`` list). After a prune those are
what the policy keeps, so the read is bounded by the policy, not by the whole history;
with a horizon (:class:`Bound`) the completed backups a ``max_age_days`` rule keeps anyway
are read only as far back as the newest ones decide the counting rules. A
hold (:class:`HoldRecord`) marks a database whose retention deletes nothing for now, so its
warning is notified once. Only this package runs SQL.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from pydantic import BaseModel

from pgvault.catalog.engine import row_dicts, select_rows, transaction, upsert
from pgvault.catalog.records import BackupCopy, BackupRecord
from pgvault.catalog.tables import backup_copies, backups, retention_holds

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
"""How many start times of young plain rows :func:`histories` reads first per database
(twice as many each page after that)."""

CHUNK = 100
"""Databases per UNION ALL of :func:`histories` (SQLite allows 500 parts in one)."""

IN_LIST = 5000
"""Names or ids per ``IN`` list of :func:`histories` (SQLite allows 32,766 parameters)."""


@dataclass(frozen=True)
class Bound:
    """How far back :func:`histories` reads one database's young completed backups.

    Attributes:
        young_after: the horizon (UTC): completed, unpinned, non-``pre-restore`` rows
            started after it are *young plain* rows.
        keep: how many of the newest young plain rows are read as rows.
        enough: says whether the start times of the newest young plain rows read so far
            (newest first, UTC) show every row the caller must decide; monotone (once True
            for some rows, True for any longer list of the newest), as
            :func:`pgvault.operations.retention.covers` is.
    """

    young_after: datetime
    keep: int
    enough: Callable[[Sequence[datetime]], bool]


def history(
    catalog: Catalog,
    database: str,
    *,
    young_after: datetime | None = None,
    keep: int = 1,
    enough: Callable[[Sequence[datetime]], bool] | None = None,
) -> RetentionHistory:
    """The live (not ``deleted``) rows of ``database``, newest first, and their copies:
    :func:`histories` of one database (with a :class:`Bound` when ``young_after`` and
    ``enough`` are given, else every live row).

    Raises:
        CatalogError: the catalog cannot be read.
    """
    if young_after is None or enough is None:
        return histories(catalog, {database: None})[database]
    return histories(catalog, {database: Bound(young_after, keep, enough)})[database]


def histories(catalog: Catalog, wanted: Mapping[str, Bound | None]) -> dict[str, RetentionHistory]:
    """The live (not ``deleted``) rows of each database of ``wanted``, newest first, and
    their copies, read in one transaction with a few statements for all the databases
    (each a UNION ALL of index seeks or an ``IN`` list), not a few per database.

    The rows hold only what retention decides on (:data:`RETENTION_COLUMNS`): read a row
    whole (:meth:`~pgvault.catalog.Catalog.get_backup`) before changing it.

    Args:
        wanted: ``{database: bound}``. None: every live row of the database is read. A
            :class:`Bound`: the start times of its young plain rows are read newest first,
            a page at a time (:data:`FIRST_PAGE`, then twice as many), until its ``enough``
            returns True; then only its ``keep`` newest young plain rows are read as rows
            and the others counted in ``unlisted``, while every other live row is read.
            When ``enough`` never says so, or the database has no more than
            :data:`FIRST_PAGE` young completed rows, every live row is read.

    Returns:
        ``{database: its history}`` for every database of ``wanted`` (empty histories for
        databases without rows).

    Raises:
        CatalogError: the catalog cannot be read.
    """
    found: dict[str, RetentionHistory] = {}
    every = [name for name, bound in wanted.items() if bound is None]
    groups: dict[tuple[datetime, int], dict[str, Bound]] = {}
    for name, bound in wanted.items():
        if bound is not None:
            groups.setdefault((bound.young_after, bound.keep), {})[name] = bound
    with transaction(catalog) as conn:
        for (young_after, keep), bounds in groups.items():
            young = _young_counts(conn, list(bounds), young_after)
            every += [name for name in bounds if young.get(name, 0) <= FIRST_PAGE]
            bounds = {n: b for n, b in bounds.items() if young.get(n, 0) > FIRST_PAGE}
            newest = _covered(conn, bounds, young_after) if bounds else {}
            every += [name for name in bounds if name not in newest]
            found |= _bounded(conn, newest, young_after, keep, young)
        found |= {name: RetentionHistory(rows, {}) for name, rows in _live(conn, every).items()}
        copies = _copies(conn, [r.id for h in found.values() for r in h.backups])
    return {
        name: RetentionHistory(
            h.backups, {r.id: copies[r.id] for r in h.backups if r.id in copies}, h.unlisted
        )
        for name, h in found.items()
    }


def _statements() -> dict[str, Any]:
    """The bounded read's statements, built once (``:names``, ``:young_after``, ...)."""
    c = backups.c
    live = sa.and_(c.database.in_(sa.bindparam("names", expanding=True)), c.status != "deleted")
    completed = c.status == "completed"
    young = sa.and_(completed, c.started_at > sa.bindparam("young_after"))
    columns = [c[name] for name in RETENTION_COLUMNS]
    parts = (  # every live row but the young plain ones; each part an index seek
        c.status.in_(("failed", "interrupted", "running")),
        sa.and_(completed, c.started_at <= sa.bindparam("young_after")),
        sa.and_(completed, c.pinned == sa.true()),
        sa.and_(completed, c.trigger == "pre-restore"),
    )
    # UNION ALL (a row may be in two parts: pinned and old): PostgreSQL cannot compare json
    union = sa.union_all(*(sa.select(*columns).where(live, part) for part in parts)).subquery()
    return {
        # one OR of the parts would scan the databases' rows: a union seeks each
        "others": sa.select(union).order_by(union.c.started_at.desc(), union.c.id.desc()),
        "young_counts": sa.select(c.database, sa.func.count())
        .where(live, young)
        .group_by(c.database),
        "live": sa.select(*columns).where(live).order_by(c.started_at.desc(), c.id.desc()),
        "by_id": sa.select(*columns).where(c.id.in_(sa.bindparam("ids", expanding=True))),
        "copies": sa.select(backup_copies).where(
            backup_copies.c.backup_id.in_(sa.bindparam("ids", expanding=True))
        ),
    }


_BUILT = _statements()


def _records(result: sa.CursorResult[Any]) -> list[BackupRecord]:
    return [BackupRecord.model_validate(row) for row in row_dicts(result)]


def _by_database(records: Iterable[BackupRecord]) -> dict[str, list[BackupRecord]]:
    """``records`` grouped by database, each group in the order given."""
    found: dict[str, list[BackupRecord]] = {}
    for record in records:
        found.setdefault(record.database, []).append(record)
    return found


def _chunks(items: Sequence[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield list(items[start : start + size])


def _young_page(
    bounds: Mapping[str, tuple[datetime, str] | None], young_after: datetime, limit: int
) -> sa.Select[Any]:
    """The ``limit`` newest young plain rows' ``(database, started_at, id)`` of each
    database of ``bounds`` below its keyset position (None: from the newest), ordered by
    database then newest first: one index seek per database, in one UNION ALL."""
    c = backups.c
    parts = []
    for name, below in bounds.items():
        where = [
            c.database == name,
            c.status == "completed",
            c.started_at > young_after,
            c.pinned == sa.false(),
            c.trigger != "pre-restore",
        ]
        if below is not None:
            last_at, last_id = below
            where.append(
                sa.or_(c.started_at < last_at, sa.and_(c.started_at == last_at, c.id < last_id))
            )
        query = sa.select(c.database, c.started_at, c.id).where(*where)
        page = query.order_by(c.started_at.desc(), c.id.desc()).limit(limit).subquery()
        parts.append(sa.select(page))
    union = sa.union_all(*parts).subquery()
    return sa.select(union).order_by(union.c.database, union.c.started_at.desc(), union.c.id.desc())


def _young_counts(
    conn: sa.Connection, names: Sequence[str], young_after: datetime
) -> dict[str, int]:
    """How many live completed rows each of ``names`` has started after ``young_after``
    (off the index; a database without any is left out). One with no more than
    :data:`FIRST_PAGE` is read whole: its pages would read every young row's start time
    anyway (a statement of one part per database, and Python over each page)."""
    counts: dict[str, int] = {}
    for chunk in _chunks(names, IN_LIST):
        at = {"names": chunk, "young_after": young_after}
        counts |= {str(n): int(k) for n, k in conn.execute(_BUILT["young_counts"], at).all()}
    return counts


def _covered(
    conn: sa.Connection, bounds: Mapping[str, Bound], young_after: datetime
) -> dict[str, list[str]]:
    """The databases of ``bounds`` whose ``enough`` says so, with the ids of their newest
    young plain rows (newest first), read by pages for all of them at once (keyset: each
    database's page starts below the last row read of it) until each either has enough
    or has no more young plain rows."""
    times: dict[str, list[datetime]] = {name: [] for name in bounds}
    ids: dict[str, list[str]] = {name: [] for name in bounds}
    pending: dict[str, tuple[datetime, str] | None] = dict.fromkeys(bounds)
    covered: dict[str, list[str]] = {}
    limit = FIRST_PAGE
    while pending:
        got: dict[str, list[tuple[datetime, str]]] = {}
        for names in _chunks(list(pending), CHUNK):
            query = _young_page({n: pending[n] for n in names}, young_after, limit)
            for database, started_at, backup_id in conn.execute(query):
                got.setdefault(database, []).append((started_at, backup_id))
        following: dict[str, tuple[datetime, str] | None] = {}
        for name in pending:
            page = got.get(name, [])
            times[name] += [at for at, _ in page]
            ids[name] += [backup_id for _, backup_id in page]
            if bounds[name].enough(times[name]):
                covered[name] = ids[name]
            elif len(page) == limit:
                following[name] = page[-1]
        pending, limit = following, limit * 2
    return covered


def _bounded(
    conn: sa.Connection,
    newest: Mapping[str, list[str]],
    young_after: datetime,
    keep: int,
    totals: Mapping[str, int],
) -> dict[str, RetentionHistory]:
    """The histories of the databases ``newest`` names (``{database: ids of its newest
    young plain rows}``): their ``keep`` newest young plain rows, every other live row, and
    the count of the young plain rows left out (without copies), from ``totals`` (as
    :func:`_young_counts` gives)."""
    found: dict[str, RetentionHistory] = {}
    for names in _chunks(list(newest), IN_LIST):
        at = {"names": names, "young_after": young_after}
        others = _by_database(
            {r.id: r for r in _records(conn.execute(_BUILT["others"], at))}.values()
        )
        wanted = [i for name in names for i in newest[name][:keep]]
        kept = _by_database(
            r
            for ids in _chunks(wanted, IN_LIST)
            for r in _records(conn.execute(_BUILT["by_id"], {"ids": ids}))
        )
        for name in names:
            own, plain = others.get(name, []), kept.get(name, [])
            exempt = sum(1 for r in own if r.status == "completed" and r.started_at > young_after)
            rows = sorted([*plain, *own], key=lambda r: (r.started_at, r.id), reverse=True)
            unlisted = int(totals.get(name, 0)) - exempt - len(plain)
            found[name] = RetentionHistory(rows, {}, unlisted)
    return found


def _live(conn: sa.Connection, names: Sequence[str]) -> dict[str, list[BackupRecord]]:
    """Every live row of each of ``names``, newest first (an empty list for none)."""
    found: dict[str, list[BackupRecord]] = {name: [] for name in names}
    for chunk in _chunks(names, IN_LIST):
        found |= _by_database(_records(conn.execute(_BUILT["live"], {"names": chunk})))
    return found


def _copies(conn: sa.Connection, backup_ids: Sequence[str]) -> dict[str, list[BackupCopy]]:
    """The copies of each of ``backup_ids`` (ids without copies are absent), as
    :meth:`~pgvault.catalog.Catalog.copies_of` reads them."""
    found: dict[str, list[BackupCopy]] = {}
    for ids in _chunks(backup_ids, IN_LIST):
        for row in row_dicts(conn.execute(_BUILT["copies"], {"ids": ids})):
            copy = BackupCopy.model_validate(row)
            found.setdefault(copy.backup_id, []).append(copy)
    return found


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
