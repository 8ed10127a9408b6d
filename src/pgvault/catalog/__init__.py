"""The catalog: every backup and restore pgvault made, in SQLite or PostgreSQL.

:class:`Catalog` opens the database, brings its schema to the newest Alembic revision
(under a PostgreSQL advisory lock when several pgvault instances share one catalog),
and offers the few queries the domain modules need.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import SQLAlchemyError

from pgvault.catalog.records import BackupCopy, BackupRecord, BackupStatus, RestoreRecord
from pgvault.catalog.tables import backup_copies, backups, restores
from pgvault.errors import CatalogError, NotFound

MIGRATIONS = Path(__file__).parent / "migrations"
MIGRATION_LOCK_KEY = 0x7067_7661  # "pgva": advisory lock key while migrating


def _engine(url: str) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        Path(parsed.database or "").parent.mkdir(parents=True, exist_ok=True)
    if parsed.get_backend_name() == "postgresql" and parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    engine = sa.create_engine(parsed, future=True)
    if parsed.get_backend_name() == "sqlite":

        @sa.event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

    return engine


HEAD_REVISION = "0008"
"""The newest migration in ``migrations/versions`` (a unit test keeps it in step); a catalog
already there opens without loading Alembic at all."""


def _revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        if not sa.inspect(conn).has_table("alembic_version"):
            return None
        return conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()


def _migrate(engine: Engine) -> None:
    """Upgrade to the newest schema, under an advisory lock on PostgreSQL (several pgvault
    instances may start at once)."""
    from alembic import command
    from alembic.config import Config

    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(sa.select(sa.func.pg_advisory_xact_lock(MIGRATION_LOCK_KEY)))
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        config.attributes["connection"] = conn
        command.upgrade(config, "head")


class Catalog:
    """Access to the catalog database. Create with :meth:`open`."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @classmethod
    def open(cls, url: str) -> Catalog:
        """Connect and migrate to the newest schema.

        Raises:
            CatalogError: the database cannot be reached or migrated (one line).
        """
        try:
            engine = _engine(url)
            if _revision(engine) != HEAD_REVISION:
                _migrate(engine)
        except SQLAlchemyError as exc:
            shown = make_url(url).render_as_string(hide_password=True)
            raise CatalogError(f"cannot open the catalog {shown}: {exc.__cause__ or exc}") from exc
        return cls(engine)

    @contextmanager
    def _tx(self) -> Iterator[Connection]:
        try:
            with self.engine.begin() as conn:
                yield conn
        except SQLAlchemyError as exc:
            raise CatalogError(f"catalog write failed: {exc.__cause__ or exc}") from exc

    def describe(self) -> str:
        """The catalog's URL without its password."""
        return self.engine.url.render_as_string(hide_password=True)

    # --- backups -------------------------------------------------------------------------

    def add_backup(self, record: BackupRecord) -> None:
        """Insert a new backup row."""
        with self._tx() as conn:
            conn.execute(backups.insert().values(**_backup_row(record)))

    def save_backup(self, record: BackupRecord) -> None:
        """Insert or replace the row of ``record.id`` (used by updates and rebuilds)."""
        row = _backup_row(record)
        with self._tx() as conn:
            done = conn.execute(backups.update().where(backups.c.id == record.id).values(**row))
            if done.rowcount == 0:
                conn.execute(backups.insert().values(**row))

    def get_backup(self, backup_id: str) -> BackupRecord:
        """The backup ``backup_id``.

        Raises:
            NotFound: no such id (the message suggests ``pgvault list``).
        """
        with self._tx() as conn:
            row = conn.execute(sa.select(backups).where(backups.c.id == backup_id)).first()
        if row is None:
            raise NotFound(f"no backup with id {backup_id!r}: run 'pgvault list' to see the ids")
        return BackupRecord.model_validate(dict(row._mapping))

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
        with self._tx() as conn:
            rows = conn.execute(query).all()
        return [BackupRecord.model_validate(dict(r._mapping)) for r in rows]

    def running_backups(self) -> list[BackupRecord]:
        """Backups whose status is still ``running``."""
        return self.list_backups(status="running")

    def stats(self) -> list[dict[str, Any]]:
        """Per database: completed ``count``, ``total_bytes``, ``oldest`` and ``newest`` (UTC)."""
        c = backups.c
        query = (
            sa.select(
                c.database,
                sa.func.count().label("count"),
                sa.func.coalesce(sa.func.sum(c.size_bytes), 0).label("total_bytes"),
                sa.func.min(c.started_at).label("oldest"),
                sa.func.max(c.started_at).label("newest"),
            )
            .where(c.status == "completed")
            .group_by(c.database)
            .order_by(c.database)
        )
        with self._tx() as conn:
            rows = conn.execute(query).all()
        return [dict(row._mapping) for row in rows]

    # --- copies --------------------------------------------------------------------------

    def save_copy(self, copy: BackupCopy) -> None:
        """Insert or replace the row of one copy."""
        row = copy.model_dump()
        key = (backup_copies.c.backup_id == copy.backup_id) & (
            backup_copies.c.storage == copy.storage
        )
        with self._tx() as conn:
            if conn.execute(backup_copies.update().where(key).values(**row)).rowcount == 0:
                conn.execute(backup_copies.insert().values(**row))

    def copies_of(self, backup_ids: list[str]) -> dict[str, list[BackupCopy]]:
        """The copies of each of ``backup_ids`` (ids without copies are absent)."""
        if not backup_ids:
            return {}
        query = sa.select(backup_copies).where(backup_copies.c.backup_id.in_(backup_ids))
        with self._tx() as conn:
            rows = conn.execute(query).all()
        found: dict[str, list[BackupCopy]] = {}
        for row in rows:
            copy = BackupCopy.model_validate(dict(row._mapping))
            found.setdefault(copy.backup_id, []).append(copy)
        return found

    # --- restores ------------------------------------------------------------------------

    def save_restore(self, record: RestoreRecord) -> None:
        """Insert or replace the row of a restore."""
        row = record.model_dump()
        with self._tx() as conn:
            done = conn.execute(restores.update().where(restores.c.id == record.id).values(**row))
            if done.rowcount == 0:
                conn.execute(restores.insert().values(**row))

    def list_restores(self, limit: int = 50) -> list[RestoreRecord]:
        """Restores, newest first."""
        query = sa.select(restores).order_by(restores.c.started_at.desc()).limit(limit)
        with self._tx() as conn:
            rows = conn.execute(query).all()
        return [RestoreRecord.model_validate(dict(r._mapping)) for r in rows]


def _backup_row(record: BackupRecord) -> dict[str, Any]:
    return record.model_dump()


def utc_text(value: datetime | None) -> str:
    """ISO-8601 UTC text of a datetime, or an empty string."""
    return "" if value is None else value.isoformat(timespec="seconds")
