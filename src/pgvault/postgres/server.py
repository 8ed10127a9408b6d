"""Talking to a PostgreSQL server with psycopg: versions, databases, counts, renames.

Every psycopg error is translated here into :class:`ConnectionFailed` or :class:`ToolError`
with one line of text; identifiers are always quoted with ``psycopg.sql.Identifier``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import psycopg
from psycopg import sql

from pgvault.errors import ConnectionFailed, DatabaseError, NotFound
from pgvault.postgres.conninfo import ConnInfo

MAX_IDENTIFIER = 63  # bytes; PostgreSQL's NAMEDATALEN - 1


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    # libpq: 'connection to server at "h" (1.2.3.4), port 5432 failed: FATAL:  password ...'
    match = re.search(r"(?:FATAL|ERROR):\s+(.*)", text)
    if match:
        return match.group(1).splitlines()[0].strip()
    head, sep, reason = text.rpartition("failed: ")
    if sep:
        # '... port 1 failed: Connection refused\n\tIs the server running ...?' -> one line
        return " ".join(part.strip() for part in reason.splitlines() if part.strip())
    lines = [ln for ln in text.splitlines() if ln.strip()]
    return lines[-1].strip() if lines else type(exc).__name__


@contextmanager
def connect(
    info: ConnInfo, *, autocommit: bool = True
) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
    """Open a connection (closed on exit).

    Raises:
        ConnectionFailed: unreachable server, wrong password, missing database; one line.
    """
    kwargs = info.connect_kwargs()
    kwargs.setdefault("connect_timeout", "10")
    try:
        conn = psycopg.connect(autocommit=autocommit, **kwargs)
    except psycopg.OperationalError as exc:
        raise ConnectionFailed(f"cannot connect to {info.display()}: {_first_line(exc)}") from exc
    try:
        yield conn
    except psycopg.Error as exc:
        raise DatabaseError(f"{info.display()}: {_first_line(exc)}") from exc
    finally:
        conn.close()


def server_version(conn: psycopg.Connection[tuple[object, ...]]) -> tuple[int, str]:
    """``(major, "18.1")`` of the connected server (``server_version_num``)."""
    num = conn.info.server_version
    major = num // 10000
    minor = num % 10000 if major >= 10 else (num // 100) % 100
    return major, f"{major}.{minor}"


def is_superuser(conn: psycopg.Connection[tuple[object, ...]]) -> bool:
    """Whether the session's role is a superuser (decides ``--no-role-passwords``)."""
    return conn.info.parameter_status("is_superuser") == "on"


def list_databases(conn: psycopg.Connection[tuple[object, ...]]) -> list[str]:
    """Names of the non-template databases that accept connections, sorted."""
    rows = conn.execute(
        "SELECT datname FROM pg_database WHERE NOT datistemplate AND datallowconn ORDER BY 1"
    ).fetchall()
    return [str(r[0]) for r in rows]


def database_exists(conn: psycopg.Connection[tuple[object, ...]], name: str) -> bool:
    """Whether a database of that exact name exists."""
    row = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
    return row is not None


def create_database_like(
    conn: psycopg.Connection[tuple[object, ...]], name: str, like: str | None
) -> None:
    """``CREATE DATABASE name TEMPLATE template0`` with the encoding, locale and owner of ``like``
    (when that database exists), so a restored copy matches the original."""
    options: list[sql.Composable] = [sql.SQL("TEMPLATE template0")]
    if like is not None and database_exists(conn, like):
        row = conn.execute(
            "SELECT pg_encoding_to_char(encoding), datcollate, datctype, "
            "pg_get_userbyid(datdba) FROM pg_database WHERE datname = %s",
            (like,),
        ).fetchone()
        assert row is not None
        encoding, collate, ctype, owner = (str(v) for v in row)
        options += [
            sql.SQL("ENCODING {}").format(sql.Literal(encoding)),
            sql.SQL("LC_COLLATE {}").format(sql.Literal(collate)),
            sql.SQL("LC_CTYPE {}").format(sql.Literal(ctype)),
            sql.SQL("OWNER {}").format(sql.Identifier(owner)),
        ]
    conn.execute(
        sql.SQL("CREATE DATABASE {} ").format(sql.Identifier(name)) + sql.SQL(" ").join(options)
    )


def terminate_sessions(conn: psycopg.Connection[tuple[object, ...]], name: str) -> int:
    """Terminate every other session on database ``name``; return how many were ended."""
    rows = conn.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE datname = %s AND pid <> pg_backend_pid()",
        (name,),
    ).fetchall()
    return len(rows)


def drop_database(conn: psycopg.Connection[tuple[object, ...]], name: str) -> None:
    """Terminate sessions on ``name`` and drop it if it exists."""
    terminate_sessions(conn, name)
    conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))


def rename_database(conn: psycopg.Connection[tuple[object, ...]], old: str, new: str) -> None:
    """``ALTER DATABASE old RENAME TO new`` (fails if anyone is connected to ``old``)."""
    conn.execute(
        sql.SQL("ALTER DATABASE {} RENAME TO {}").format(sql.Identifier(old), sql.Identifier(new))
    )


def allow_connections(conn: psycopg.Connection[tuple[object, ...]], name: str, allow: bool) -> None:
    """``ALTER DATABASE name ALLOW_CONNECTIONS true|false``."""
    conn.execute(
        sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS {}").format(
            sql.Identifier(name), sql.SQL("true" if allow else "false")
        )
    )


def databases_like(conn: psycopg.Connection[tuple[object, ...]], pattern: str) -> list[str]:
    """Database names matching a POSIX regular expression."""
    rows = conn.execute(
        "SELECT datname FROM pg_database WHERE datname ~ %s ORDER BY 1", (pattern,)
    ).fetchall()
    return [str(r[0]) for r in rows]


def count_rows(
    conn: psycopg.Connection[tuple[object, ...]], tables: Iterable[tuple[str, str]]
) -> dict[str, int]:
    """Exact ``count(*)`` of each ``(schema, table)``; keys are ``"schema.table"``.

    Tables are counted with ``ONLY`` so a partitioned parent does not repeat its partitions.
    """
    counts: dict[str, int] = {}
    for schema, table in tables:
        query = sql.SQL("SELECT count(*) FROM ONLY {}.{}").format(
            sql.Identifier(schema), sql.Identifier(table)
        )
        row = conn.execute(query).fetchone()
        assert row is not None
        counts[f"{schema}.{table}"] = int(str(row[0]))
    return counts


def table_checksums(conn: psycopg.Connection[tuple[object, ...]]) -> dict[str, tuple[int, str]]:
    """Per ordinary table (``"schema.table"``): its row count and an md5 of its content that
    does not depend on row order (the md5 of the sorted md5s of each row's text form)."""
    found: dict[str, tuple[int, str]] = {}
    for schema, table in user_tables(conn):
        query = sql.SQL(
            "SELECT count(*), md5(coalesce(string_agg(h, '' ORDER BY h), '')) "
            "FROM (SELECT md5(t::text) AS h FROM ONLY {}.{} t) rows"
        ).format(sql.Identifier(schema), sql.Identifier(table))
        row = conn.execute(query).fetchone()
        assert row is not None
        found[f"{schema}.{table}"] = (int(str(row[0])), str(row[1]))
    return found


def user_tables(conn: psycopg.Connection[tuple[object, ...]]) -> list[tuple[str, str]]:
    """``(schema, table)`` of every ordinary table outside the system schemas."""
    rows = conn.execute(
        "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema') "
        "AND n.nspname NOT LIKE 'pg\\_toast%%' ORDER BY 1, 2"
    ).fetchall()
    return [(str(r[0]), str(r[1])) for r in rows]


def require_database(conn: psycopg.Connection[tuple[object, ...]], name: str) -> None:
    """Raise :class:`NotFound` unless database ``name`` exists."""
    if not database_exists(conn, name):
        raise NotFound(f"database {name!r} does not exist on this server")
