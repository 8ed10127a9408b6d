"""The databases pgvault works on: from the config file by name, or from a bare URL."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from pgvault.config.settings import DatabaseSettings, Settings
from pgvault.errors import ConfigError
from pgvault.postgres import conninfo, server
from pgvault.postgres.conninfo import ConnInfo


@dataclass(frozen=True)
class DatabaseTarget:
    """One database with the settings that apply to it."""

    name: str
    conn: ConnInfo
    settings: DatabaseSettings = field(default_factory=DatabaseSettings)

    @property
    def environment(self) -> str | None:
        """The environment this database belongs to, if configured."""
        return self.settings.environment

    @property
    def post_restore_sql(self) -> Path | None:
        """SQL run in a restored copy before it goes live."""
        return self.settings.post_restore_sql


def from_config(settings: Settings, name: str) -> DatabaseTarget:
    """The database configured as ``[databases.NAME]``.

    Raises:
        ConfigError: no such name (lists the configured ones).
    """
    if name not in settings.databases:
        known = ", ".join(sorted(settings.databases)) or "none configured"
        raise ConfigError(f"no database named {name!r} in the config ({known})", needs="database")
    db = settings.databases[name]
    dbname = db.dbname or name
    if db.url:
        info = conninfo.parse(db.url, password_file=db.password_file, keep=True)
        if db.dbname:
            info = info.with_dbname(db.dbname)
    else:
        info = conninfo.from_fields(
            host=db.host, port=db.port, user=db.user, dbname=dbname, password_file=db.password_file
        )
    return DatabaseTarget(name=name, conn=info, settings=db)


def from_url(settings: Settings, url: str) -> DatabaseTarget:
    """A database named by URL; uses a configured entry when one has the same server and name."""
    info = conninfo.parse(url)
    for name, db in settings.databases.items():
        if db.url and _same_database(conninfo.parse(db.url), info):
            configured = from_config(settings, name)
            return DatabaseTarget(name=name, conn=info, settings=configured.settings)
    return DatabaseTarget(name=info.dbname, conn=info)


def resolve(settings: Settings, url: str | None, name: str | None) -> DatabaseTarget:
    """A database from ``--database NAME`` or a URL (exactly one must be given).

    Raises:
        ConfigError: neither or both given, or the name is unknown.
    """
    if (url is None) == (name is None):
        raise ConfigError(
            "give either a connection URL or the name of a configured database", needs="target"
        )
    return from_config(settings, name) if name is not None else from_url(settings, url or "")


def list_tables(target: DatabaseTarget) -> list[str]:
    """The ordinary tables of ``target`` as ``schema.table`` (the names ``pg_dump -t`` takes
    for "specific tables"), sorted; the system schemas left out.

    Raises:
        ConnectionFailed: the database cannot be reached.
    """
    with server.connect(target.conn) as conn:
        return [f"{schema}.{table}" for schema, table in server.user_tables(conn)]


def _same_database(a: ConnInfo, b: ConnInfo) -> bool:
    return a.server_key() == b.server_key() and a.dbname == b.dbname
