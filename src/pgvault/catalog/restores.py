"""Restore rows (``restores``): one per restore run, with its outcome."""

from __future__ import annotations

import sqlalchemy as sa

from pgvault.catalog.engine import CatalogBase, select_rows, upsert
from pgvault.catalog.records import RestoreRecord
from pgvault.catalog.tables import restores


class RestoreRows(CatalogBase):
    """The restore queries of :class:`pgvault.catalog.Catalog`."""

    def save_restore(self, record: RestoreRecord) -> None:
        """Insert or replace the row of a restore."""
        upsert(self, restores, {"id": record.id}, record.model_dump())

    def get_restore(self, restore_id: str) -> RestoreRecord | None:
        """The restore ``restore_id``, or None."""
        found = select_rows(self, sa.select(restores).where(restores.c.id == restore_id))
        return RestoreRecord.model_validate(found[0]) if found else None

    def list_restores(self, limit: int = 50) -> list[RestoreRecord]:
        """Restores, newest first."""
        query = sa.select(restores).order_by(restores.c.started_at.desc()).limit(limit)
        return [RestoreRecord.model_validate(r) for r in select_rows(self, query)]
