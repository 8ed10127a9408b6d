"""Named locks across processes and hosts, on parts users already run.

With a PostgreSQL catalog (several pgvault instances sharing it) a lock is a session-level
advisory lock on that server (``pg_try_advisory_lock``); with the default SQLite catalog
(one host) it is an ``flock`` on a file under ``<home>/locks``. Used for "never two backups
of the same database at once" and "run each scheduled job once".
"""

from __future__ import annotations

import fcntl
import hashlib
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import sqlalchemy as sa

from pgvault import private
from pgvault.catalog import Catalog
from pgvault.config.settings import Settings

if TYPE_CHECKING:  # a type only: psycopg is not imported for a lock
    from pgvault.postgres.conninfo import ConnInfo


def database_lock(conn: ConnInfo) -> str:
    """The lock name of one database (server and name): held by its backups and by the jobs
    that back up or restore it, so two never run at once on any host sharing the catalog."""
    return f"backup:{conn.server_key()}/{conn.dbname}"


def lock_key(name: str) -> int:
    """A stable signed 64-bit advisory-lock key for ``name`` (sha256 prefix)."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


@contextmanager
def exclusive(settings: Settings, catalog: Catalog, name: str) -> Iterator[bool]:
    """Try to take the lock ``name`` without waiting; yields whether it was taken.

    The lock is released when the block ends (or the process dies: the server drops a dead
    session's advisory locks, the kernel a dead process's flock).
    """
    if catalog.engine.dialect.name == "postgresql":
        with catalog.engine.connect() as conn:
            key = lock_key(name)
            got = bool(conn.execute(sa.select(sa.func.pg_try_advisory_lock(key))).scalar())
            conn.commit()
            try:
                yield got
            finally:
                if got:
                    conn.execute(sa.select(sa.func.pg_advisory_unlock(key)))
                    conn.commit()
        return
    directory = Path(settings.home) / "locks"
    private.makedirs(directory)
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", name)[:100] + "-" + f"{lock_key(name) & 0xFFFFFFFF:08x}"
    path = directory / f"{safe}.lock"
    private.ensure_file(path)
    with open(path, "a+b") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
