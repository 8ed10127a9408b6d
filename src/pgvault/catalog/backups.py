"""Backup rows (``backups``) and the rows of their copies on other targets (``backup_copies``).

Every query the domain needs about backups: insert and update (one or many), one by id,
newest-first listings with filters in pages (offset or keyset cursor), the rows still
``running``, and the copies of a set of backups. Every listing reads its rows in the order
``(started_at, id)`` descending off one of the indexes in :data:`~pgvault.catalog.tables.
BACKUP_INDEXES`.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from pgvault.catalog import days
from pgvault.catalog.engine import CatalogBase, select_rows, transaction, upsert, utc
from pgvault.catalog.records import BackupCopy, BackupRecord, BackupStatus
from pgvault.catalog.tables import backup_copies, backups
from pgvault.errors import ConfigError, NotFound

BATCH_ROWS = 500
"""Rows per transaction of :meth:`BackupRows.save_backups`."""


class BackupRows(CatalogBase):
    """The backup queries of :class:`pgvault.catalog.Catalog`."""

    def add_backup(self, record: BackupRecord) -> None:
        """Insert a new backup row (and recompute its day's totals).

        Raises:
            CatalogError: the write failed (a duplicate id included).
        """
        with transaction(self) as conn:
            conn.execute(backups.insert().values(**record.model_dump()))
            days.refresh(conn, [(record.database, record.started_at)])

    def save_backup(self, record: BackupRecord) -> None:
        """Insert or replace the row of ``record.id`` (used by updates and rebuilds)."""
        self.save_backups([record])

    def save_backups(self, records: Iterable[BackupRecord]) -> int:
        """Insert or replace many rows, :data:`BATCH_ROWS` per transaction (catalog rebuilds,
        imports); a later record of the same id wins. Returns the number of rows written.

        Raises:
            CatalogError: a write failed (the batches before it stay written).
        """
        written = 0
        batch: dict[str, dict[str, Any]] = {}
        for record in records:
            batch[record.id] = record.model_dump()
            if len(batch) == BATCH_ROWS:
                written += self._save_batch(batch)
                batch = {}
        return written + (self._save_batch(batch) if batch else 0)

    def _save_batch(self, rows: dict[str, dict[str, Any]]) -> int:
        """Write one batch in one transaction: update the ids present, insert the others,
        then recompute the days of the rows before and after."""
        c = backups.c
        with transaction(self) as conn:
            query = sa.select(c.id, c.database, c.started_at).where(c.id.in_(list(rows)))
            before = {r.id: (r.database, r.started_at) for r in conn.execute(query).all()}
            fresh = [row for key, row in rows.items() if key not in before]
            if fresh:
                conn.execute(backups.insert(), fresh)
            for key in before:
                conn.execute(backups.update().where(c.id == key).values(**rows[key]))
            after = [(row["database"], row["started_at"]) for row in rows.values()]
            days.refresh(conn, [*before.values(), *after])
        return len(rows)

    def forget_backup(self, backup_id: str) -> None:
        """Remove the row of something that never became a backup (an upload refused while
        it was received). Real backups are never removed: they end ``deleted``."""
        with transaction(self) as conn:
            conn.execute(
                backups.delete().where(
                    (backups.c.id == backup_id) & (backups.c.status == "running")
                )
            )

    def get_backup(self, backup_id: str) -> BackupRecord:
        """The backup ``backup_id``.

        Raises:
            NotFound: no such id (the message suggests listing the backups).
        """
        found = select_rows(self, sa.select(backups).where(backups.c.id == backup_id))
        if not found:
            raise NotFound(f"no backup with id {backup_id!r}", needs="backup")
        return BackupRecord.model_validate(found[0])

    def find_backup(self, ref: str, *, database: str | None = None) -> BackupRecord:
        """The backup ``ref`` names: its id; ``latest`` (the newest completed backup of
        ``database``); or its file name (the last part of its storage key, or the whole key).

        Raises:
            ConfigError: ``latest`` without a database, or a file name several backups share.
            NotFound: nothing matches.
        """
        if ref == "latest":
            if database is None:
                raise ConfigError("'latest' needs the database whose newest backup to use")
            newest = self.list_backups(database=database, status="completed", limit=1)
            if not newest:
                raise NotFound(f"no completed backup of {database!r} yet: take one first")
            return newest[0]
        found = select_rows(self, sa.select(backups).where(backups.c.id == ref))
        if not found:
            c = backups.c
            by_name = (c.storage_key == ref) | c.storage_key.endswith("/" + ref, autoescape=True)
            query = sa.select(backups).where(by_name & (c.status != "deleted"))
            if database is not None:
                query = query.where(c.database == database)
            found = select_rows(self, query.limit(5))
        if len(found) > 1:
            ids = ", ".join(str(r["id"]) for r in found)
            raise ConfigError(f"{ref!r} names several backups ({ids}): use the backup id")
        if not found:
            raise NotFound(f"no backup with id {ref!r} (nor a file of that name)", needs="backup")
        return BackupRecord.model_validate(found[0])

    def list_backups(
        self,
        *,
        database: str | None = None,
        environment: str | None = None,
        status: BackupStatus | None = None,
        include_deleted: bool = False,
        limit: int | None = None,
    ) -> list[BackupRecord]:
        """Backups, newest first (``started_at``, then ``id``), filtered by database name,
        environment and status; ``deleted`` ones only with ``include_deleted`` or
        ``status="deleted"``. Without ``limit``, every matching row: for pages use
        :meth:`page_backups`."""
        where = _filters(database, environment, status, include_deleted=include_deleted)
        return self._select_page(where, limit=limit)

    def running_backups(self) -> list[BackupRecord]:
        """Backups whose status is still ``running``."""
        return self.list_backups(status="running")

    def page_backups(
        self,
        *,
        database: str | None = None,
        environment: str | None = None,
        status: str | None = None,
        trigger: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        label: tuple[str, str] | None = None,
        oldest_first: bool = False,
        limit: int = 50,
        offset: int = 0,
        cursor: str | None = None,
    ) -> BackupPage:
        """One page of backups, newest first (``oldest_first``: the other way); ``deleted``
        ones only when asked by ``status``; ``since``/``until`` bound ``started_at`` (UTC,
        until exclusive); ``label`` is ``(key, value)``, a label the backup carries.

        Pages are read off an index either way: ``offset`` skips that many rows (pages
        shift when backups are added), ``cursor`` (the ``next_cursor`` of the page before,
        newest-first order only) continues after the last row seen, so no row is shown
        twice or skipped while new backups arrive (keyset pagination). ``offset`` applies
        after the cursor.

        Raises:
            ConfigError: ``cursor`` is not one this catalog gave out, or is combined with
                ``oldest_first``.
        """
        where = _filters(database, environment, status, trigger, since, until, label)
        if cursor is not None:
            if oldest_first:
                raise ConfigError("a cursor pages newest first: leave out oldest_first")
            started, backup_id = read_cursor(cursor)
            where.append(older_than(backups, started, backup_id))
        found = self._select_page(where, limit=limit + 1, offset=offset, oldest_first=oldest_first)
        more = len(found) > limit
        items = found[:limit]
        return BackupPage(items, cursor_of(items[-1]) if more and not oldest_first else None)

    def search_backups(
        self, *, limit: int = 50, offset: int = 0, **filters: Any
    ) -> list[BackupRecord]:
        """The rows of :meth:`page_backups` (same filters), without the cursor."""
        return self.page_backups(limit=limit, offset=offset, **filters).items

    def _select_page(
        self,
        where: list[Any],
        *,
        limit: int | None = None,
        offset: int = 0,
        oldest_first: bool = False,
    ) -> list[BackupRecord]:
        """Rows matching ``where``, newest first (or oldest first). The page's ids come from
        an index alone (a deep ``offset`` skips index entries, never whole rows); then only
        those rows are read."""
        c = backups.c
        if oldest_first:
            order: tuple[Any, ...] = (c.started_at.asc(), c.id.asc())
        else:
            order = (c.started_at.desc(), c.id.desc())
        if limit is None and not offset:
            query = sa.select(backups).where(*where).order_by(*order)
        else:
            ids = sa.select(c.id).where(*where).order_by(*order).limit(limit).offset(offset)
            query = sa.select(backups).where(c.id.in_(ids)).order_by(*order)
        return [BackupRecord.model_validate(r) for r in select_rows(self, query)]

    def count_backups(
        self,
        *,
        database: str | None = None,
        environment: str | None = None,
        status: str | None = None,
        trigger: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        label: tuple[str, str] | None = None,
    ) -> int:
        """How many backups :meth:`search_backups` finds with the same filters (all pages)."""
        where = _filters(database, environment, status, trigger, since, until, label)
        query = sa.select(sa.func.count().label("n")).select_from(backups).where(*where)
        return int(select_rows(self, query)[0]["n"])

    # --- copies --------------------------------------------------------------------------

    def save_copy(self, copy: BackupCopy) -> None:
        """Insert or replace the row of one copy."""
        key: dict[str, Any] = {"backup_id": copy.backup_id, "storage": copy.storage}
        upsert(self, backup_copies, key, copy.model_dump())

    def copies_of(self, backup_ids: list[str]) -> dict[str, list[BackupCopy]]:
        """The copies of each of ``backup_ids`` (ids without copies are absent)."""
        if not backup_ids:
            return {}
        query = sa.select(backup_copies).where(backup_copies.c.backup_id.in_(backup_ids))
        found: dict[str, list[BackupCopy]] = {}
        for row in select_rows(self, query):
            copy = BackupCopy.model_validate(row)
            found.setdefault(copy.backup_id, []).append(copy)
        return found


@dataclass(frozen=True)
class BackupPage:
    """One page of backups, newest first, and the cursor of the next (None on the last)."""

    items: list[BackupRecord]
    next_cursor: str | None


def cursor_of(record: BackupRecord) -> str:
    """The opaque cursor of the position just after ``record`` in newest-first order:
    URL-safe base64 of ``[started_at (ISO-8601 UTC, microseconds), id]``."""
    moment = record.started_at.astimezone(UTC).isoformat(timespec="microseconds")
    raw = json.dumps([moment, record.id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def read_cursor(cursor: str) -> tuple[datetime, str]:
    """``(started_at, id)`` of a :func:`cursor_of` cursor.

    Raises:
        ConfigError: not a cursor this catalog gave out.
    """
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        moment, backup_id = json.loads(raw)
        started = datetime.fromisoformat(moment)
        if started.tzinfo is None or not isinstance(backup_id, str):
            raise ValueError("not a position")
    except (ValueError, TypeError) as exc:
        raise ConfigError(
            "cursor is not one pgvault gave out: pass the next_cursor of the page before, "
            "or leave it out to start from the newest"
        ) from exc
    return started, backup_id


def older_than(table: Any, started: Any, backup_id: Any) -> Any:
    """Rows of ``table`` (``backups`` or an alias) after ``(started, backup_id)`` in
    newest-first order, i.e. ``(started_at, id) < (started, backup_id)``, written so both
    SQLite and PostgreSQL range-scan an index on ``started_at``. ``started`` and
    ``backup_id`` are values or columns."""
    c = table.c
    return (c.started_at <= started) & ((c.started_at < started) | (c.id < backup_id))


def _filters(
    database: str | None,
    environment: str | None,
    status: str | None,
    trigger: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    label: tuple[str, str] | None = None,
    *,
    include_deleted: bool = False,
) -> list[sa.ColumnElement[bool]]:
    """The WHERE clauses shared by the listings of :class:`BackupRows` and their count:
    ``deleted`` rows only when ``status`` asks for them or ``include_deleted``."""
    c = backups.c
    since, until = utc(since), utc(until)
    where: list[sa.ColumnElement[bool]] = []
    if status:
        where.append(c.status == status)
    elif not include_deleted:
        where.append(c.status != "deleted")
    for column, value in (
        (c.database, database),
        (c.environment, environment),
        (c.trigger, trigger),
    ):
        if value is not None:
            where.append(column == value)
    if since is not None:
        where.append(c.started_at >= since)
    if until is not None:
        where.append(c.started_at < until)
    if label is not None:
        where.append(c.labels[label[0]].as_string() == label[1])
    return where
