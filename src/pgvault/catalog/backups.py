"""Backup rows (``backups``) and the rows of their copies on other targets (``backup_copies``).

Every query the domain needs about backups: insert and update, one by id, newest-first
listings with filters, the rows still ``running``, and the copies of a set of backups.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa

from pgvault.catalog.engine import CatalogBase, select_rows, transaction, upsert, utc
from pgvault.catalog.records import BackupCopy, BackupRecord, BackupStatus
from pgvault.catalog.tables import backup_copies, backups
from pgvault.errors import ConfigError, NotFound


class BackupRows(CatalogBase):
    """The backup queries of :class:`pgvault.catalog.Catalog`."""

    def add_backup(self, record: BackupRecord) -> None:
        """Insert a new backup row.

        Raises:
            CatalogError: the write failed (a duplicate id included).
        """
        with transaction(self) as conn:
            conn.execute(backups.insert().values(**record.model_dump()))

    def save_backup(self, record: BackupRecord) -> None:
        """Insert or replace the row of ``record.id`` (used by updates and rebuilds)."""
        upsert(self, backups, {"id": record.id}, record.model_dump())

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
        """Backups, newest first, filtered by database name, environment and status."""
        query = sa.select(backups).order_by(backups.c.started_at.desc(), backups.c.id.desc())
        if database is not None:
            query = query.where(backups.c.database == database)
        if environment is not None:
            query = query.where(backups.c.environment == environment)
        if status is not None:
            query = query.where(backups.c.status == status)
        elif not include_deleted:
            query = query.where(backups.c.status != "deleted")
        if limit is not None:
            query = query.limit(limit)
        return [BackupRecord.model_validate(r) for r in select_rows(self, query)]

    def running_backups(self) -> list[BackupRecord]:
        """Backups whose status is still ``running``."""
        return self.list_backups(status="running")

    def search_backups(
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
    ) -> list[BackupRecord]:
        """Backups newest first (``oldest_first``: the other way); ``deleted`` ones only
        when asked by ``status``; ``since``/``until`` bound ``started_at`` (UTC, until
        exclusive); ``label`` is ``(key, value)``, a label the backup carries."""
        c = backups.c
        where = _filters(database, environment, status, trigger, since, until, label)
        order = (
            (c.started_at.asc(), c.id.asc())
            if oldest_first
            else (
                c.started_at.desc(),
                c.id.desc(),
            )
        )
        query = sa.select(backups).where(*where).order_by(*order).limit(limit).offset(offset)
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


def _filters(
    database: str | None,
    environment: str | None,
    status: str | None,
    trigger: str | None,
    since: datetime | None,
    until: datetime | None,
    label: tuple[str, str] | None,
) -> list[sa.ColumnElement[bool]]:
    """The WHERE clauses shared by :meth:`BackupRows.search_backups` and its count."""
    c = backups.c
    since, until = utc(since), utc(until)
    where: list[sa.ColumnElement[bool]] = [c.status == status if status else c.status != "deleted"]
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
