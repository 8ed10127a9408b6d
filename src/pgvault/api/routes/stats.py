"""``GET /stats``: per database count, total bytes, oldest, newest."""

from __future__ import annotations

from fastapi import APIRouter

from pgvault.api.deps import CatalogDep, require_role
from pgvault.api.routes._common import ERRORS
from pgvault.api.schemas import StatsOut

router = APIRouter(tags=["stats"], responses=ERRORS, dependencies=[require_role("viewer")])


@router.get("/stats", response_model=list[StatsOut])
def stats(catalog: CatalogDep) -> list[StatsOut]:
    """Completed backups per database: count, total bytes, oldest and newest (UTC)."""
    return [StatsOut.model_validate(row) for row in catalog.stats()]
