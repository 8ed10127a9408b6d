"""The restore journal (``restore_journal``): one row per restore or verification that
creates databases, its last step written *before* the step runs, so the next start of any
pgvault process sharing the catalog can finish or undo what a dead run left half done.

Steps of a swap, in order (see :mod:`pgvault.restores.journal`): ``planned`` -> ``loading``
-> ``proven`` -> ``blocking`` -> ``live_renamed`` -> ``scratch_renamed`` -> ``swapped``;
a row is closed (``finished_at`` set, ``outcome`` in words) when the run ends or is
repaired. Connection parameters are kept without any password.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

import sqlalchemy as sa
from pydantic import BaseModel, Field

from pgvault.catalog.engine import select_rows, transaction, update_rows
from pgvault.catalog.tables import restore_journal

if TYPE_CHECKING:
    from pgvault.catalog import Catalog

JournalKind = Literal["swap", "clean", "recreate", "verify"]


class JournalEntry(BaseModel):
    """One journaled run: where it works (server, live name, scratch and previous names),
    its last step, and how it ended."""

    id: str = Field(description="The restore's id (or the verification's).")
    kind: JournalKind
    step: str
    server: str = Field(description="postgresql://user@host:port of the server, no password.")
    conn_params: dict[str, str] = Field(description="libpq parameters, never a password.")
    dbname: str | None = Field(default=None, description="The live database's name.")
    scratch: str | None = None
    previous: str | None = Field(default=None, description="Where the live one is renamed to.")
    load_role: str | None = Field(default=None, description="A temporary login role in use.")
    load_database: str | None = None
    proven: bool = Field(default=False, description="The scratch copy passed every check.")
    runner: str | None = None
    started_at: datetime
    updated_at: datetime
    finished_at: datetime | None = None
    outcome: str | None = None


def add_entry(catalog: Catalog, entry: JournalEntry) -> None:
    """Insert a new journal row."""
    with transaction(catalog) as conn:
        conn.execute(restore_journal.insert().values(**entry.model_dump()))


def update_entry(catalog: Catalog, entry_id: str, **values: Any) -> None:
    """Set columns of one journal row (``updated_at`` is the caller's to set)."""
    update_rows(catalog, restore_journal, restore_journal.c.id == entry_id, values)


def get_entry(catalog: Catalog, entry_id: str) -> JournalEntry | None:
    """The journal row ``entry_id``, or None."""
    found = select_rows(catalog, sa.select(restore_journal).where(restore_journal.c.id == entry_id))
    return JournalEntry.model_validate(found[0]) if found else None


def open_entries(catalog: Catalog) -> list[JournalEntry]:
    """Rows not closed yet (running, or left by a run that died), oldest first."""
    query = (
        sa.select(restore_journal)
        .where(restore_journal.c.finished_at.is_(None))
        .order_by(restore_journal.c.started_at)
    )
    return [JournalEntry.model_validate(r) for r in select_rows(catalog, query)]


def live_names(catalog: Catalog, server: str) -> set[str]:
    """Names of live databases that rows of ``server`` name (for leftovers: never offered)."""
    query = sa.select(restore_journal.c.dbname).where(restore_journal.c.server == server)
    return {str(r["dbname"]) for r in select_rows(catalog, query) if r["dbname"]}
