"""Connection parameters, kept apart from the password.

A database is named by a libpq URL (``postgresql://user@host:5432/db``) or key=value string.
The password never travels on a command line: :class:`ConnInfo` keeps it aside and hands
it to children only through ``PGPASSWORD`` in their environment (libpq's own variable).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

import psycopg.conninfo

from pgvault.errors import ConfigError

# libpq parameters that have an environment variable (libpq docs, "Environment Variables").
_ENV_OF = {
    "host": "PGHOST",
    "hostaddr": "PGHOSTADDR",
    "port": "PGPORT",
    "user": "PGUSER",
    "passfile": "PGPASSFILE",
    "sslmode": "PGSSLMODE",
    "sslrootcert": "PGSSLROOTCERT",
    "sslcert": "PGSSLCERT",
    "sslkey": "PGSSLKEY",
    "connect_timeout": "PGCONNECT_TIMEOUT",
    "application_name": "PGAPPNAME",
    "options": "PGOPTIONS",
    "service": "PGSERVICE",
    "target_session_attrs": "PGTARGETSESSIONATTRS",
}


@dataclass(frozen=True)
class ConnInfo:
    """Where and as whom to connect; ``password`` is never shown by ``str``/``repr``."""

    params: dict[str, str]
    password: str | None = field(default=None, repr=False)

    @property
    def dbname(self) -> str:
        """The database name (libpq's default: the user name)."""
        return self.params.get("dbname") or self.params.get("user") or "postgres"

    def with_dbname(self, dbname: str) -> ConnInfo:
        """The same server and role, another database."""
        return replace(self, params={**self.params, "dbname": dbname})

    def with_params(self, **params: str) -> ConnInfo:
        """The same connection with some libpq parameters set (never the password)."""
        return replace(self, params={**self.params, **params})

    def dsn(self) -> str:
        """A libpq key=value string without the password, safe for argv and logs."""
        return psycopg.conninfo.make_conninfo("", **self.params)

    def display(self) -> str:
        """A short URL for humans: ``postgresql://user@host:port/db`` (no password)."""
        host = self.params.get("host", "localhost")
        port = self.params.get("port", "5432")
        user = self.params.get("user", "")
        at = f"{user}@" if user else ""
        return f"postgresql://{at}{host}:{port}/{self.dbname}"

    def server_key(self) -> str:
        """``host:port`` identifying the server, for names and the catalog."""
        return f"{self.params.get('host', 'localhost')}:{self.params.get('port', '5432')}"

    def child_env(self, base: dict[str, str] | None = None) -> dict[str, str]:
        """Environment for a client tool: the caller's env plus PGPASSWORD when known."""
        env = dict(os.environ if base is None else base)
        if self.password is not None:
            env["PGPASSWORD"] = self.password
        return env

    def connect_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``psycopg.connect`` (the password included)."""
        kwargs: dict[str, Any] = dict(self.params)
        if self.password is not None:
            kwargs["password"] = self.password
        return kwargs


def parse(text: str, *, password_file: Path | None = None, keep: bool = False) -> ConnInfo:
    """Parse a libpq URL or key=value string; move any password out of the parameters.

    The password comes from, in order: the string itself, ``password_file`` (first line),
    ``PGPASSWORD``; otherwise libpq's passfile (``~/.pgpass``) applies in the child.

    Args:
        keep: remember libpq's parse of ``text`` for the process's life (only for strings
            of the config, which the settings hold anyway: never a string from a request).

    Raises:
        ConfigError: the string is not a valid connection string.
    """
    params = dict(_kept(text) if keep else _parsed(text))
    password = params.pop("password", None)
    clean = {key: value for key, value in params.items() if value is not None}
    if password is None and password_file is not None:
        try:
            password = password_file.read_text().splitlines()[0]
        except (OSError, IndexError) as exc:
            raise ConfigError(f"cannot read password_file {password_file}: {exc}") from exc
    if password is None:
        password = os.environ.get("PGPASSWORD")
    return ConnInfo(params=clean, password=None if password is None else str(password))


@lru_cache(maxsize=1024)
def _kept(text: str) -> tuple[tuple[str, str], ...]:
    """:func:`_parsed`, remembered: a health check describes every configured database at
    each call. Only the parse is kept; a password file is read at each :func:`parse`, so a
    rotated password is seen."""
    return _parsed(text)


def _parsed(text: str) -> tuple[tuple[str, str], ...]:
    """libpq's parse of ``text``: its ``(keyword, value)`` pairs that have a value.

    Raises:
        ConfigError: the string is not a valid connection string.
    """
    try:
        params = psycopg.conninfo.conninfo_to_dict(text)
    except psycopg.ProgrammingError as exc:
        raise ConfigError(
            "invalid connection string: use postgresql://user@host:port/dbname"
        ) from exc
    return tuple((key, str(value)) for key, value in params.items() if value is not None)


def from_fields(
    *,
    host: str | None,
    port: int | None,
    user: str | None,
    dbname: str,
    password_file: Path | None,
) -> ConnInfo:
    """Build a :class:`ConnInfo` from separate libpq fields (config without ``url``)."""
    parts = {"host": host, "port": None if port is None else str(port), "user": user}
    text = psycopg.conninfo.make_conninfo(
        "", dbname=dbname, **{k: v for k, v in parts.items() if v}
    )
    return parse(text, password_file=password_file, keep=True)  # from the config only
