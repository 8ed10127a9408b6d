"""``GET /audit``: the audit log (admins), filterable."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query
from pydantic import AwareDatetime

from pgvault.api.deps import CatalogDep, require_role
from pgvault.api.routes._common import ERRORS
from pgvault.api.schemas import AuditOut
from pgvault.catalog import audit

router = APIRouter(tags=["audit"], responses=ERRORS, dependencies=[require_role("admin")])


@router.get("/audit", response_model=list[AuditOut])
def audit_log(
    catalog: CatalogDep,
    actor: Annotated[str | None, Query(max_length=255)] = None,
    action: Annotated[str | None, Query(max_length=255, description="Substring.")] = None,
    result: Literal["ok", "denied", "failed"] | None = None,
    since: AwareDatetime | None = None,
    until: AwareDatetime | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=1_000_000_000)] = 0,
) -> list[AuditOut]:
    """Who did what, newest first."""
    found = audit.search(
        catalog,
        actor=actor,
        action=action,
        result=result,
        since=since,
        until=until,
        limit=limit,
        offset=offset,
    )
    return [AuditOut.model_validate(e.model_dump()) for e in found]
