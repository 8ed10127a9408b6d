"""The audit log: who did what to which target, from where, with which result, when.

Every mutating call to the service and every login (success or failure) is appended by the
API's audit middleware; CLI commands that change users, tokens or override a guard append
too. Rows live in ``audit_events`` and are never updated or deleted by pgvault.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Literal

import sqlalchemy as sa
from pydantic import BaseModel

from pgvault.catalog.engine import select_rows, transaction, utc
from pgvault.catalog.tables import audit_events
from pgvault.errors import PgvaultError

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


log = logging.getLogger(__name__)

Result = Literal["ok", "denied", "failed"]


def result_of(status_code: int) -> Result:
    """``ok`` for 1xx-3xx, ``denied`` for 401/403/429, ``failed`` otherwise."""
    if status_code < 400:
        return "ok"
    return "denied" if status_code in (401, 403, 429) else "failed"


def record(
    catalog: Catalog,
    *,
    actor: str | None,
    action: str,
    target: str | None = None,
    address: str | None = None,
    result: Result = "ok",
    status_code: int | None = None,
    detail: str | None = None,
) -> None:
    """Append one event (times are UTC). A catalog failure is logged, never raised: the
    operation it describes has already happened."""
    event = AuditEvent(
        at=datetime.now(UTC),
        actor=actor,
        action=action,
        target=target,
        source_address=address,
        result=result,
        status_code=status_code,
        detail=(detail or None) and detail[:2000],
    )
    try:
        add_audit_event(catalog, event)
    except PgvaultError as exc:
        log.error("audit event not written (%s %s by %s): %s", action, target, actor, exc)


search = list_audit_events
"""Events newest first, filtered by actor, action (substring), result and time (UTC)."""
