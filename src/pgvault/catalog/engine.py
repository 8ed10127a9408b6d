"""The catalog's database connection: engine, schema migrations, transactions.

:class:`CatalogBase` opens SQLite or PostgreSQL through SQLAlchemy, brings the schema to the
newest Alembic revision (under a PostgreSQL advisory lock when several pgvault instances share
one catalog), and gives the row modules (``backups``, ``restores``, ``accounts``, ``jobs``,
``audit``, ``stats``, ``locks``) their transactions. Nothing outside this package runs SQL on
the catalog.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from pgvault import private
from pgvault.errors import CatalogError

if TYPE_CHECKING:
    from pgvault.catalog import Catalog

MIGRATIONS = Path(__file__).parent / "migrations"
MIGRATION_LOCK_KEY = 0x7067_7661  # "pgva": advisory lock key while migrating
HEAD_REVISION = "0010"
"""The newest migration in ``migrations/versions`` (a unit test keeps it in step); a catalog
already there opens without loading Alembic at all."""


def _engine(url: str) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        path = Path(parsed.database or "")
        private.makedirs(path.parent)
        private.ensure_file(path)  # 0600 before SQLite opens it: its -wal/-shm take its mode
    if parsed.get_backend_name() == "postgresql" and parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    options: dict[str, Any] = {}
    if parsed.drivername == "postgresql+psycopg":
        # The catalog has no hstore column: skip the dialect's hstore type lookup (one more
        # round trip on every first connection, that is at every command's start).
        options["use_native_hstore"] = False
    engine = sa.create_engine(parsed, future=True, **options)
    if parsed.get_backend_name() == "sqlite":

        @sa.event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

    return engine


_VERSION_TABLE_EXISTS = {
    # One statement each, instead of SQLAlchemy's inspector (which reflects the dialect's
    # schema defaults first): this runs at every command's start.
    "postgresql": "SELECT to_regclass('alembic_version') IS NOT NULL",
    "sqlite": "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table'"
    " AND name = 'alembic_version')",
}


def _revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        exists = _VERSION_TABLE_EXISTS.get(conn.dialect.name)
        if exists is None:
            present = sa.inspect(conn).has_table("alembic_version")
        else:
            present = bool(conn.execute(sa.text(exists)).scalar())
        if not present:
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


class CatalogBase:
    """The catalog's engine; the row mixins of :class:`pgvault.catalog.Catalog` build on it."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @classmethod
    def open(cls, url: str) -> Catalog:
        """Connect to the SQLAlchemy ``url`` and migrate to the newest schema.

        Raises:
            CatalogError: the database cannot be reached or migrated (one line).
        """
        from pgvault.catalog import Catalog

        try:
            engine = _engine(url)
            if _revision(engine) != HEAD_REVISION:
                _migrate(engine)
        except SQLAlchemyError as exc:
            shown = make_url(url).render_as_string(hide_password=True)
            raise CatalogError(f"cannot open the catalog {shown}: {exc.__cause__ or exc}") from exc
        return Catalog(engine)

    def describe(self) -> str:
        """The catalog's URL without its password."""
        return self.engine.url.render_as_string(hide_password=True)

    @property
    def dialect(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return str(self.engine.dialect.name)


@contextmanager
def transaction(catalog: CatalogBase, *, conflicts: bool = False) -> Iterator[Connection]:
    """One catalog transaction, committed when the block ends.

    Args:
        conflicts: let :class:`sqlalchemy.exc.IntegrityError` through (the caller turns a
            duplicate key into its own answer); otherwise it is a :class:`CatalogError`.

    Raises:
        CatalogError: the query failed (one line).
    """
    try:
        with catalog.engine.begin() as conn:
            yield conn
    except IntegrityError as exc:
        if conflicts:
            raise
        raise CatalogError(f"catalog write failed: {exc.__cause__ or exc}") from exc
    except SQLAlchemyError as exc:
        raise CatalogError(f"catalog query failed: {exc.__cause__ or exc}") from exc


def utc(value: datetime | None) -> datetime | None:
    """``value`` in UTC; times beyond the calendar's ends (year 1 at +14:00) are clamped."""
    if value is None:
        return None
    try:
        return value.astimezone(UTC)
    except OverflowError:
        return (datetime.min if value.year == 1 else datetime.max).replace(tzinfo=UTC)


def upsert(catalog: CatalogBase, table: sa.Table, key: dict[str, Any], row: dict[str, Any]) -> None:
    """Update the row of ``table`` matching ``key`` (column -> value) to ``row``, or insert it."""
    where = sa.and_(*(table.c[name] == value for name, value in key.items()))
    with transaction(catalog) as conn:
        if conn.execute(table.update().where(where).values(**row)).rowcount == 0:
            conn.execute(table.insert().values(**row))


def select_rows(catalog: CatalogBase, query: sa.Select[Any]) -> list[dict[str, Any]]:
    """Run ``query``; its rows as dicts (column -> value)."""
    with transaction(catalog) as conn:
        return row_dicts(conn.execute(query))


def row_dicts(result: sa.CursorResult[Any]) -> list[dict[str, Any]]:
    """The rows of ``result`` as dicts (column -> value); ``zip`` with the result's keys
    costs half of ``dict(row._mapping)`` per row."""
    keys = list(result.keys())
    return [dict(zip(keys, row, strict=True)) for row in result.all()]


def update_rows(catalog: CatalogBase, table: sa.Table, where: Any, values: dict[str, Any]) -> int:
    """``UPDATE table SET values WHERE where``; returns the number of rows changed."""
    with transaction(catalog) as conn:
        return int(conn.execute(table.update().where(where).values(**values)).rowcount)


def utc_text(value: datetime | None) -> str:
    """ISO-8601 UTC text of a datetime, or an empty string."""
    return "" if value is None else value.isoformat(timespec="seconds")
