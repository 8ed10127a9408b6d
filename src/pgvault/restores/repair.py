"""Repairing restores a dead process left unfinished, from their journal.

Run at every start of a pgvault process (:func:`repair_unfinished`) and by
``pgvault restore --repair``. A journal row still open whose run's lock is free belongs to a
dead run (on any host sharing the catalog). :func:`settle` looks at what is on the server,
not only at the last step written, and leaves the live name holding a whole database that
accepts connections::

    live present, scratch gone, previous present  -> roll forward: the proven copy is live,
                                                     the old one kept as <db>_pre_restore_*
    live present otherwise                        -> roll back: scratch dropped, live open
    live missing, previous present                -> roll back: previous renamed back, open
    live missing, no previous                     -> scratch dropped (nothing was live)

A temporary login role of the run is dropped, its restore row ends ``interrupted`` with
what was done, and the journal row is closed. A server that cannot be reached keeps its
rows open (``pgvault doctor`` reports them) for a later start.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass

from pgvault import databases, runtime
from pgvault.catalog import Catalog, locks
from pgvault.catalog import journal as rows
from pgvault.catalog.journal import JournalEntry
from pgvault.config.settings import Settings
from pgvault.errors import PgvaultError
from pgvault.postgres import server
from pgvault.postgres.conninfo import ConnInfo
from pgvault.restores import privileges
from pgvault.restores.journal import application_name, lock_name

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Repaired:
    """One unfinished run put right: its id and what was done, in words."""

    entry_id: str
    kind: str
    outcome: str


def server_login(settings: Settings, entry: JournalEntry) -> ConnInfo:
    """How to reach a journal row's server again: the password of a configured database on
    that server as that role, else ``PGPASSWORD`` / libpq's passfile."""
    params = dict(entry.conn_params)
    probe = ConnInfo(params=params)
    for name in settings.databases:
        try:
            configured = databases.from_config(settings, name).conn
        except PgvaultError:
            continue
        same_role = configured.params.get("user") == params.get("user")
        if configured.server_key() == probe.server_key() and same_role:
            return ConnInfo(params=params, password=configured.password)
    return ConnInfo(params=params, password=os.environ.get("PGPASSWORD"))


def settle(settings: Settings, entry: JournalEntry) -> str:
    """Put the databases of ``entry`` right (see the module doc); returns what was done.

    Raises:
        ConnectionFailed, DatabaseError: the server cannot be reached or refused.
    """
    login = server_login(settings, entry)
    end_sessions(login, entry.id)
    if entry.kind == "swap":
        outcome = _settle_swap(login, entry)
    elif entry.kind == "verify":
        outcome = _drop_scratch(login, entry)
    elif entry.kind == "recreate":
        outcome = (
            f"the run died during a recreate restore: {entry.dbname} may be partial "
            "(restore its safety backup)"
        )
    else:
        outcome = (
            "the run died during a clean restore: its one transaction rolled back, "
            f"{entry.dbname} is as it was"
        )
    if entry.load_role:
        database = entry.load_database
        if database == entry.scratch and entry.kind == "swap" and "rolled forward" in outcome:
            database = entry.dbname
        privileges.drop_role(login, entry.load_role, database)
    return outcome


def end_sessions(login: ConnInfo, entry_id: str, timeout: float = 60.0) -> None:
    """End every session of the run ``entry_id`` still on the server (its client is dead,
    but a statement such as CREATE DATABASE may still run there) and wait until they are
    gone, so what :func:`settle` sees is final.

    Raises:
        ConnectionFailed, DatabaseError: the server cannot be reached.
    """
    name = application_name(entry_id)
    deadline = time.monotonic() + timeout
    with server.connect(login.with_dbname("postgres")) as conn:
        while True:
            rows = conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = %s AND pid <> pg_backend_pid()",
                (name,),
            ).fetchall()
            if not rows or time.monotonic() > deadline:
                return
            time.sleep(0.1)


def _settle_swap(login: ConnInfo, entry: JournalEntry) -> str:
    live, scratch, previous = entry.dbname, entry.scratch, entry.previous
    assert live is not None
    with server.connect(login.with_dbname("postgres")) as conn:

        def exists(name: str | None) -> bool:
            return name is not None and server.database_exists(conn, name)

        if exists(live):
            if exists(previous) and not exists(scratch):
                server.allow_connections(conn, live, True)
                assert previous is not None
                server.allow_connections(conn, previous, True)
                return (
                    f"rolled forward: the restored copy is live as {live}, the previous "
                    f"database is kept as {previous}"
                )
            if exists(scratch):
                assert scratch is not None
                server.drop_database(conn, scratch)
            server.allow_connections(conn, live, True)
            return f"rolled back: {live} is the database it was, accepting connections"
        if exists(previous):
            assert previous is not None
            server.rename_database(conn, previous, live)
            server.allow_connections(conn, live, True)
            if exists(scratch):
                assert scratch is not None
                server.drop_database(conn, scratch)
            return f"rolled back: the previous database was renamed back to {live}"
        if exists(scratch):
            assert scratch is not None
            server.drop_database(conn, scratch)
        return f"rolled back: {live} did not exist before; the scratch copy was dropped"


def _drop_scratch(login: ConnInfo, entry: JournalEntry) -> str:
    if entry.scratch is None:
        return "nothing was created"
    with server.connect(login.with_dbname("postgres")) as conn:
        server.drop_database(conn, entry.scratch)
    return f"scratch database {entry.scratch} dropped"


def repair_unfinished(settings: Settings, catalog: Catalog) -> list[Repaired]:
    """Repair every journaled run whose process died (its lock is free); returns what was
    repaired. Never raises for one run: a failure is logged and the row stays open."""
    done = []
    for entry in rows.open_entries(catalog):
        with locks.exclusive(settings, catalog, lock_name(entry.id)) as got:
            if not got:
                continue  # the run is alive, here or on another host
            current = rows.get_entry(catalog, entry.id)
            if current is None or current.finished_at is not None:
                continue  # it ended meanwhile
            try:
                outcome = settle(settings, current)
            except PgvaultError as exc:
                log.warning(
                    "restore %s of %s left unfinished by a dead pgvault, not repaired yet: %s",
                    entry.id,
                    entry.dbname,
                    exc,
                )
                continue
            _close(catalog, current, outcome)
            log.warning("restore %s of %s was interrupted: %s", entry.id, entry.dbname, outcome)
            done.append(Repaired(entry.id, entry.kind, outcome))
    return done


def unfinished(catalog: Catalog) -> list[JournalEntry]:
    """Journal rows still open (running now, or waiting for a repair)."""
    return rows.open_entries(catalog)


def stuck(settings: Settings, catalog: Catalog) -> list[JournalEntry]:
    """Open journal rows whose run is dead (nobody holds their lock): not repaired yet."""
    found = []
    for entry in rows.open_entries(catalog):
        with locks.exclusive(settings, catalog, lock_name(entry.id)) as got:
            if got:
                found.append(entry)
    return found


def _close(catalog: Catalog, entry: JournalEntry, outcome: str) -> None:
    now = runtime.now()
    detail = f"interrupted at step {entry.step}: {outcome}"
    rows.update_entry(catalog, entry.id, finished_at=now, updated_at=now, outcome=detail)
    record = catalog.get_restore(entry.id)
    if record is not None and record.status == "running":
        record.status = "interrupted"
        record.error = f"the pgvault process running this restore died ({detail})"
        record.finished_at = now
        record.duration_seconds = (now - record.started_at).total_seconds()
        catalog.save_restore(record)
