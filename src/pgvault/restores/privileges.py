"""Whose privileges a load runs with: SQL from outside runs as the target database's owner.

A dump pgvault took itself is restored as the connecting role (usually a superuser, so
owners and grants come back as they were). SQL that came from outside (``restore --file``,
an upload) could do anything a superuser can (``CREATE ROLE ... SUPERUSER``, ``ALTER
SYSTEM``, ``COPY ... TO PROGRAM``; its own ``COMMIT`` escapes ``--single-transaction``), so
it runs with the privileges of the database's owner instead, unless the CLI user says
``--as-superuser`` (never offered over the API):

* connected as a superuser: a temporary login role ``pgvault_load_<hex>`` (no superuser,
  no CREATEROLE/CREATEDB/REPLICATION/BYPASSRLS, a random password sent only as a SCRAM
  verifier, valid one day) is made a member of the owner; pg_restore and psql log in as it
  with ``options=-c role=<owner>`` (objects are created by the owner), and it is dropped
  afterwards (its objects reassigned to the owner first). A crash leaves its name in the
  journal, so the repair drops it.
* connected as a role that is not a superuser: that role is used as it is.
* the owner itself is a superuser: refused (:class:`Refused`) before anything is touched.

A verification of an upload does the same with the owner of the database it was uploaded
for; when that one is missing or a superuser, a temporary role (:func:`temporary_role`)
owns the verification's scratch database itself.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta

import psycopg
from psycopg import sql

from pgvault import runtime
from pgvault.errors import PgvaultError, Refused
from pgvault.postgres import server
from pgvault.postgres.conninfo import ConnInfo

log = logging.getLogger(__name__)

Conn = psycopg.Connection[tuple[object, ...]]
ROLE_PREFIX = "pgvault_load_"


def database_owner(conn: Conn, dbname: str) -> tuple[str, bool] | None:
    """``(owner, owner is a superuser)`` of database ``dbname``, or None if it does not exist."""
    row = conn.execute(
        "SELECT r.rolname, r.rolsuper FROM pg_database d JOIN pg_roles r ON r.oid = d.datdba "
        "WHERE d.datname = %s",
        (dbname,),
    ).fetchone()
    return None if row is None else (str(row[0]), bool(row[1]))


def check(conn: Conn, dbname: str, *, untrusted: bool, as_superuser: bool) -> None:
    """Refuse, before anything is touched, a restore of SQL from outside that would run with
    a superuser's privileges.

    Args:
        conn: a maintenance connection to the target's server.
        dbname: the target database (its owner decides; a new one would belong to the
            connecting role).
        untrusted: the SQL came from outside pgvault (a file, an upload).
        as_superuser: the CLI user asked for a superuser restore.

    Raises:
        Refused: the owner (or, for a new database, the connecting role) is a superuser.
    """
    if not untrusted or as_superuser or not server.is_superuser(conn):
        return
    found = database_owner(conn, dbname)
    if found is None:
        raise Refused(
            f"SQL from outside pgvault runs with the privileges of the target database's "
            f"owner, and {dbname!r} does not exist yet (it would belong to a superuser): "
            f"create it first with a non-superuser owner (CREATE DATABASE {dbname} OWNER "
            "app), or restore it as a superuser if you trust the file",
            needs="superuser",
        )
    owner, owner_is_superuser = found
    if owner_is_superuser:
        raise Refused(
            f"SQL from outside pgvault runs with the privileges of the owner of {dbname!r}, "
            f"and its owner {owner!r} is a superuser: give it a non-superuser owner (ALTER "
            f"DATABASE {dbname} OWNER TO app), or restore it as a superuser if you trust "
            "the file",
            needs="superuser",
        )


def _escape_option(value: str) -> str:
    """A value inside libpq's ``options`` (backslash before spaces and backslashes)."""
    return value.replace("\\", "\\\\").replace(" ", "\\ ")


def login_as(target: ConnInfo, role: str, password: str, set_role: str | None) -> ConnInfo:
    """``target``'s server and database, logged in as ``role`` (optionally ``SET ROLE``)."""
    params = {k: v for k, v in target.params.items() if k not in ("user", "passfile", "service")}
    params["user"] = role
    if set_role is not None:
        extra = f"-c role={_escape_option(set_role)}"
        params["options"] = f"{params['options']} {extra}" if params.get("options") else extra
    return ConnInfo(params=params, password=password)


def drop_role(maintenance: ConnInfo, role: str, database: str | None) -> None:
    """Drop a temporary role: its sessions ended, whatever it owns in ``database`` handed to
    that database's owner, then the role itself. A missing role or database is fine.

    Raises:
        ConnectionFailed, DatabaseError: the server cannot be reached or refused.
    """
    with server.connect(maintenance.with_dbname("postgres")) as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", (role,)
        )
        if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone() is None:
            return
        found = database_owner(conn, database) if database else None
    if found is not None and database is not None:
        owner = found[0]
        if owner != role:
            with server.connect(maintenance.with_dbname(database)) as conn:
                conn.execute(
                    sql.SQL("REASSIGN OWNED BY {} TO {}").format(
                        sql.Identifier(role), sql.Identifier(owner)
                    )
                )
                conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
    with server.connect(maintenance.with_dbname("postgres")) as conn:
        conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


@contextmanager
def owner_login(
    conn: Conn,
    maintenance: ConnInfo,
    dbname: str,
    *,
    untrusted: bool,
    as_superuser: bool,
    note_role: Callable[[str], None] | None = None,
) -> Iterator[ConnInfo]:
    """The connection a load into ``dbname`` uses (see the module doc); a temporary role is
    dropped when the block ends.

    Args:
        conn: a maintenance connection to the server (as the configured role).
        maintenance: that connection's parameters (any database name).
        note_role: called with the temporary role's name before it is created (the journal
            records it, so a crash never leaves it behind unnoticed).

    Raises:
        Refused: as :func:`check`.
    """
    target = maintenance.with_dbname(dbname)
    if not untrusted or as_superuser or not server.is_superuser(conn):
        yield target
        return
    check(conn, dbname, untrusted=untrusted, as_superuser=as_superuser)
    found = database_owner(conn, dbname)
    assert found is not None
    with temporary_role(conn, maintenance, found[0], note_role, dbname) as role:
        yield role.login(target, set_role=found[0])


@dataclass(frozen=True)
class TemporaryRole:
    """A temporary login role: its name and (random) password."""

    name: str
    password: str = field(repr=False)

    def login(self, target: ConnInfo, set_role: str | None = None) -> ConnInfo:
        """``target``'s server and database, logged in as this role."""
        return login_as(target, self.name, self.password, set_role)


@contextmanager
def temporary_role(
    conn: Conn,
    maintenance: ConnInfo,
    member_of: str | None,
    note_role: Callable[[str], None] | None = None,
    database: str | None = None,
) -> Iterator[TemporaryRole]:
    """A temporary login role (a member of ``member_of``, if given) for the block; dropped
    afterwards, whatever it owns in ``database`` handed to that database's owner."""
    name, password = _new_role(conn, member_of, note_role)
    try:
        yield TemporaryRole(name, password)
    finally:
        _cleanup(maintenance, name, database)


def _new_role(
    conn: Conn, member_of: str | None, note_role: Callable[[str], None] | None
) -> tuple[str, str]:
    name = ROLE_PREFIX + secrets.token_hex(6)
    if note_role is not None:
        note_role(name)
    password = secrets.token_urlsafe(32)
    verifier = conn.pgconn.encrypt_password(password.encode(), name.encode(), b"scram-sha-256")
    until = (runtime.now() + timedelta(days=1)).isoformat()
    conn.execute(
        sql.SQL(
            "CREATE ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION "
            "NOBYPASSRLS INHERIT PASSWORD {} VALID UNTIL {}"
        ).format(sql.Identifier(name), sql.Literal(verifier.decode()), sql.Literal(until))
    )
    if member_of is not None:
        conn.execute(
            sql.SQL("GRANT {} TO {}").format(sql.Identifier(member_of), sql.Identifier(name))
        )
    return name, password


def _cleanup(maintenance: ConnInfo, role: str, database: str | None) -> None:
    try:
        drop_role(maintenance, role, database)
    except PgvaultError as exc:
        log.warning("temporary role %s not dropped yet (the next start drops it): %s", role, exc)
