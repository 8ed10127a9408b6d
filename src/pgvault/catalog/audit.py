"""The audit log in the catalog (``audit_events``), for :mod:`pgvault.service.audit`."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Literal

import sqlalchemy as sa
from pydantic import BaseModel

from pgvault.catalog.engine import select_rows, transaction, utc
from pgvault.catalog.tables import audit_events

if TYPE_CHECKING:
    from pgvault.catalog import Catalog


class AuditEvent(BaseModel):
    """Who did what to which target from where, with which result, when (UTC)."""

    id: int | None = None
    at: datetime
    actor: str | None = None
    action: str
    target: str | None = None
    source_address: str | None = None
    result: Literal["ok", "denied", "failed"]
    status_code: int | None = None
    detail: str | None = None


# --- audit -------------------------------------------------------------------------------


def add_audit_event(catalog: Catalog, event: AuditEvent) -> None:
    """Append one audit event."""
    with transaction(catalog) as conn:
        conn.execute(audit_events.insert().values(**event.model_dump(exclude={"id"})))


def list_audit_events(
    catalog: Catalog,
    *,
    actor: str | None = None,
    action: str | None = None,
    result: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[AuditEvent]:
    """Audit events, newest first, filtered; ``action`` matches as a substring."""
    c = audit_events.c
    since, until = utc(since), utc(until)
    query = sa.select(audit_events).order_by(c.at.desc(), c.id.desc())
    if actor is not None:
        query = query.where(c.actor == actor)
    if action is not None:
        query = query.where(c.action.contains(action, autoescape=True))
    if result is not None:
        query = query.where(c.result == result)
    if since is not None:
        query = query.where(c.at >= since)
    if until is not None:
        query = query.where(c.at < until)
    query = query.limit(limit).offset(offset)
    return [AuditEvent.model_validate(r) for r in select_rows(catalog, query)]
