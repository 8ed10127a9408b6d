"""Databases that swap restores leave behind: the previous live database
(``<db>_pre_restore_<ts>``, kept on purpose as the way back) and stray scratch databases."""

from __future__ import annotations

from pgvault.errors import Refused
from pgvault.postgres import server
from pgvault.postgres.conninfo import ConnInfo
from pgvault.restores.steps import PRE_RESTORE_MARK, SCRATCH_MARK


def leftovers(info: ConnInfo) -> list[str]:
    """Databases that swap restores left behind (``*_pre_restore_*``, stray scratch ones)."""
    with server.connect(info.with_dbname("postgres")) as conn:
        return server.databases_like(conn, f"({PRE_RESTORE_MARK}|{SCRATCH_MARK})[0-9_]+$")


def drop_leftover(info: ConnInfo, name: str) -> None:
    """Drop one leftover database (only names :func:`leftovers` lists).

    Raises:
        Refused: ``name`` is not a leftover of a restore.
    """
    if name not in leftovers(info):
        raise Refused(f"{name!r} is not a leftover of a pgvault restore; nothing dropped")
    with server.connect(info.with_dbname("postgres")) as conn:
        server.drop_database(conn, name)
