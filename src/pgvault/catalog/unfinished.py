"""What a dead process may have left unfinished, asked in one statement at every start.

Every pgvault process (each CLI command, the API, the scheduler) repairs what dead processes
left before it works (:func:`pgvault.operations.startup.recover`). Most starts find nothing,
so the question "is anything unfinished?" is one ``SELECT`` of three ``EXISTS`` subqueries,
each answered by an index (``ix_backups_status_started``, ``ix_file_snapshots_status``,
``ix_restore_journal_finished``), instead of one transaction per kind of row.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import sqlalchemy as sa

from pgvault.catalog.engine import transaction
from pgvault.catalog.tables import backups, file_snapshots, restore_journal

if TYPE_CHECKING:
    from pgvault.catalog import Catalog


@dataclass(frozen=True)
class Unfinished:
    """Which kinds of rows a run that died may have left open."""

    backups: bool
    """A backup row is ``running``."""
    snapshots: bool
    """A file snapshot row is ``running``."""
    restores: bool
    """A restore journal row has no ``finished_at``."""

    def __bool__(self) -> bool:
        return self.backups or self.snapshots or self.restores


def unfinished(catalog: Catalog) -> Unfinished:
    """Whether any backup or file snapshot is ``running`` and any journaled restore open:
    one round trip. A ``running`` row may belong to a live process; the repairs decide.

    Raises:
        CatalogError: the catalog cannot be read.
    """
    query = sa.select(
        sa.exists().where(backups.c.status == "running"),
        sa.exists().where(file_snapshots.c.status == "running"),
        sa.exists().where(restore_journal.c.finished_at.is_(None)),
    )
    with transaction(catalog) as conn:
        row = conn.execute(query).one()
    return Unfinished(backups=bool(row[0]), snapshots=bool(row[1]), restores=bool(row[2]))
