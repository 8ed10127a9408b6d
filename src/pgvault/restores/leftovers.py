"""Databases that swap restores leave behind: the previous live database
(``<db>_pre_restore_<ts>``, kept on purpose as the way back) and stray scratch databases.

A database the journal still needs is never a leftover: one named by an unfinished run
(its repair may rename it back to the live name) or any database a journal row says is the
live one.
"""

from __future__ import annotations

from pgvault.catalog import Catalog
from pgvault.catalog import journal as rows
from pgvault.errors import Refused
from pgvault.postgres import server
from pgvault.postgres.conninfo import ConnInfo
from pgvault.restores.steps import PRE_RESTORE_MARK, SCRATCH_MARK


def _protected(catalog: Catalog, info: ConnInfo) -> set[str]:
    where = info.with_dbname("postgres").display().rsplit("/", 1)[0]
    names = rows.live_names(catalog, where)
    for entry in rows.open_entries(catalog):
        if entry.server == where:
            names |= {n for n in (entry.dbname, entry.scratch, entry.previous) if n}
    return names


def leftovers(catalog: Catalog, info: ConnInfo) -> list[str]:
    """Databases that swap restores left behind (``*_pre_restore_*``, stray scratch ones),
    minus those a journal protects (see the module doc)."""
    with server.connect(info.with_dbname("postgres")) as conn:
        found = server.databases_like(conn, f"({PRE_RESTORE_MARK}|{SCRATCH_MARK})[0-9_]+$")
    protected = _protected(catalog, info)
    return [name for name in found if name not in protected]


def drop_leftover(catalog: Catalog, info: ConnInfo, name: str) -> None:
    """Drop one leftover database (only names :func:`leftovers` lists).

    Raises:
        Refused: ``name`` is not a leftover of a restore.
    """
    if name not in leftovers(catalog, info):
        raise Refused(f"{name!r} is not a leftover of a pgvault restore; nothing dropped")
    with server.connect(info.with_dbname("postgres")) as conn:
        server.drop_database(conn, name)
