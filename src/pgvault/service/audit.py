"""The audit log: who did what to which target, from where, with which result, when.

Every mutating call to the service and every login (success or failure) is appended by the
API's audit middleware; the CLI's user and token commands append too. Rows are never
updated or deleted by pgvault.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Literal

from pgvault.catalog import Catalog
from pgvault.catalog import audit as rows
from pgvault.catalog.audit import AuditEvent
from pgvault.errors import PgvaultError

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
        rows.add_audit_event(catalog, event)
    except PgvaultError as exc:
        log.error("audit event not written (%s %s by %s): %s", action, target, actor, exc)


search = rows.list_audit_events
"""Events newest first, filtered by actor, action (substring), result and time (UTC)."""
