"""Each database's newest rows in a few queries, whatever the number of databases or rows:
the names by a loose index scan, then one index seek per database for its last run and its
newest completed backup, one for the completed backup before that, and the rows themselves.

The statements are built once (on first use) with expanding parameters, so a health check
pays for executing them, not for building and compiling them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from pgvault.catalog.backups import older_than
from pgvault.catalog.engine import row_dicts
from pgvault.catalog.records import BackupRecord
from pgvault.catalog.tables import backups

ENDED = ("completed", "failed", "interrupted")
LOOK_BACK = 200
"""Completed rows before a database's newest that :func:`newest_rows` looks through for a
comparable one (health always read a database's 200 newest rows)."""
SLIM_OMITS = ("row_counts", "object_counts")
"""Columns left out (None) of the rows :func:`newest_rows` returns besides the newest
completed one: the JSON of row counts is most of a row's reading cost."""


@dataclass(frozen=True)
class NewestRows:
    """One database's newest rows, as health judges it (each None when there is none).

    Attributes:
        last_run: the newest row that ended (``completed``, ``failed`` or ``interrupted``),
            without :data:`SLIM_OMITS` unless it is ``completed`` too.
        completed: the newest ``completed`` row, whole.
        previous: the newest ``completed`` row before ``completed`` equal to it in the
            fields asked for (the comparable backup of a size check), without
            :data:`SLIM_OMITS`.
    """

    last_run: BackupRecord | None
    completed: BackupRecord | None
    previous: BackupRecord | None

    def rows(self) -> list[BackupRecord]:
        """The distinct rows, newest first."""
        found = {r.id: r for r in (self.previous, self.last_run, self.completed) if r}
        return sorted(found.values(), key=lambda r: (r.started_at, r.id), reverse=True)


def _newest(table: Any, *where: Any) -> Any:
    """The id of the newest row of ``table`` matching ``where`` (a correlated scalar
    subquery: one index seek per outer row)."""
    return (
        sa.select(table.c.id)
        .where(*where)
        .order_by(table.c.started_at.desc(), table.c.id.desc())
        .limit(1)
        .scalar_subquery()
    )


def _names() -> Any:
    """The distinct database names of ``backups`` as a recursive CTE ``names(name)``: one
    index seek per name (a loose index scan, as in the PostgreSQL wiki's recipe), not a scan
    of every row."""
    c = backups.c
    first = sa.select(sa.func.min(c.database).label("name")).cte("names", recursive=True)
    b = backups.alias("b")
    after = sa.select(sa.func.min(b.c.database)).where(b.c.database > first.c.name)
    step = sa.select(after.scalar_subquery()).where(first.c.name.is_not(None))
    return first.union_all(step)


@cache
def names_query() -> Any:
    """``SELECT name``: every database name that has a backup row."""
    names = _names()
    return sa.select(names.c.name).where(names.c.name.is_not(None))


@cache
def _heads_query() -> Any:
    """``(name, id of the last run, id of the newest completed)`` per database."""
    names = _names()
    b = backups.alias("b")
    return (
        sa.select(
            names.c.name,
            _newest(b, b.c.database == names.c.name, b.c.status.in_(ENDED)),
            _newest(b, b.c.database == names.c.name, b.c.status == "completed"),
        )
        .select_from(names)
        .where(names.c.name.is_not(None))
    )


@cache
def _previous_query() -> Any:
    """``(id, id of the completed row just before it in its database)`` of ``:ids``."""
    n, p = backups.alias("n"), backups.alias("p")
    before = older_than(p, n.c.started_at, n.c.id)
    found = _newest(p, p.c.database == n.c.database, p.c.status == "completed", before)
    return sa.select(n.c.id, found).where(n.c.id.in_(sa.bindparam("ids", expanding=True)))


@cache
def _rows_query(slim: bool) -> Any:
    """The rows of ``:ids`` (without :data:`SLIM_OMITS` when ``slim``)."""
    columns = [c for c in backups.c if not (slim and c.name in SLIM_OMITS)]
    return sa.select(*columns).where(backups.c.id.in_(sa.bindparam("ids", expanding=True)))


def _records(conn: Connection, ids: set[str], *, slim: bool) -> dict[str, BackupRecord]:
    if not ids:
        return {}
    rows = row_dicts(conn.execute(_rows_query(slim), {"ids": sorted(ids)}))
    return {str(r["id"]): BackupRecord.model_validate(r) for r in rows}


def _alike(a: BackupRecord, b: BackupRecord, same: Sequence[str]) -> bool:
    return all(getattr(a, name) == getattr(b, name) for name in same)


def _look_back(conn: Connection, newest: BackupRecord, same: Sequence[str]) -> BackupRecord | None:
    """The newest of the :data:`LOOK_BACK` completed rows before ``newest`` (same database)
    equal to it in ``same``, or None."""
    c = backups.c
    columns = [col for col in backups.c if col.name not in SLIM_OMITS]
    query = (
        sa.select(*columns)
        .where(
            c.database == newest.database,
            c.status == "completed",
            older_than(backups, newest.started_at, newest.id),
        )
        .order_by(c.started_at.desc(), c.id.desc())
        .limit(LOOK_BACK)
    )
    for row in row_dicts(conn.execute(query)):
        record = BackupRecord.model_validate(row)
        if _alike(record, newest, same):
            return record
    return None


def newest_rows(conn: Connection, same: Sequence[str]) -> dict[str, NewestRows]:
    """Every catalogued database's :class:`NewestRows`, the comparable backup looked for
    among the :data:`LOOK_BACK` completed rows before the newest (one more query for each
    database whose previous completed backup differs in ``same``, e.g. after a backup of a
    few tables).

    Args:
        same: field names of a backup that must be equal for ``previous``.
    """
    heads = [(str(r[0]), r[1], r[2]) for r in conn.execute(_heads_query()).all()]
    done = {d for _, _, d in heads if d is not None}
    before = dict(conn.execute(_previous_query(), {"ids": sorted(done)}).all()) if done else {}
    whole = _records(conn, done, slim=False)
    others = {i for _, r, d in heads for i in (r, before.get(d)) if i is not None} - done
    slim = _records(conn, others, slim=True)
    found = {}
    for name, run, newest in heads:
        completed = whole.get(newest) if newest else None
        previous = slim.get(before.get(newest) or "")
        if completed and previous and not _alike(completed, previous, same):
            previous = _look_back(conn, completed, same)
        last = (whole.get(run) or slim.get(run)) if run else None
        found[name] = NewestRows(last_run=last, completed=completed, previous=previous)
    return found
