"""``/schedules`` (each schedule's next runs in its own time zone and its last result; each
database's retention policy in words, the "what would be deleted now" preview with the rule
that keeps or drops each backup, and apply for admins) and ``/storage`` (the targets)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import Response

from pgvault.catalog.records import BackupRecord
from pgvault.config.operations import RetentionSettings
from pgvault.operations import prune, retention, schedules, targets
from pgvault.web import format as fmt
from pgvault.web.deps import Parts, Viewer, acting, require
from pgvault.web.render import PageRoute, page

router = APIRouter(route_class=PageRoute, include_in_schema=False)
SHOWN_ITEMS = 200  # rows of a retention preview shown per decision (the counts are all)


@dataclass
class Policy:
    """A database's retention in words: its own policy and its schedules' policies."""

    database: str
    words: str
    schedules: dict[str, str]


def _policies(parts: Parts) -> list[Policy]:
    found = []
    for name in sorted(parts.settings.databases):
        policy, own = prune.policies(parts.settings, name)
        found.append(Policy(name, fmt.retention_words(policy), _own_words(own)))
    return found


def _own_words(own: dict[str, RetentionSettings]) -> dict[str, str]:
    return {schedule: fmt.retention_words(policy) for schedule, policy in sorted(own.items())}


def _last(parts: Parts, info: schedules.ScheduleInfo) -> BackupRecord | None:
    if info.kind != "backup" or info.database is None:
        return None
    found = parts.catalog.search_backups(
        database=info.database, label=(retention.SCHEDULE_LABEL, info.name), limit=1
    )
    return found[0] if found else None


@router.get("/schedules")
def schedules_page(
    request: Request,
    viewer: Viewer,
    parts: Parts,
) -> Response:
    """Schedules with their next runs and last results; retention policies in words."""
    infos = schedules.next_runs(parts.settings, count=3)
    return page(
        request,
        "schedules.html",
        title="Schedules and retention",
        schedules=[(info, fmt.zone_of(info.timezone), _last(parts, info)) for info in infos],
        policies=_policies(parts),
    )


@router.get("/retention", dependencies=[require("admin")])
def retention_preview(
    request: Request,
    parts: Parts,
    database: Annotated[str, Query(min_length=1, max_length=255)],
    keep_last: Annotated[int | None, Query(ge=1, le=100_000)] = None,
) -> Response:
    """What retention would delete now in ``database`` and which rule keeps or drops each
    backup (a dry run: nothing changes)."""
    report = prune.apply(
        parts.settings, parts.catalog, database=database, dry_run=True, keep_last=keep_last
    )
    return _retention_page(request, parts, database, report, keep_last, applied=False)


def _retention_page(
    request: Request,
    parts: Parts,
    database: str,
    report: prune.PruneReport,
    keep_last: int | None,
    *,
    applied: bool,
) -> Response:
    items = report.items
    policy, own = prune.policies(parts.settings, database)
    dropped = [i for i in items if not i.keep]
    kept = [i for i in items if i.keep]
    return page(
        request,
        "retention.html",
        title=f"Retention of {database}",
        database=database,
        words=fmt.retention_words(retention.with_keep_last(keep_last) if keep_last else policy),
        schedule_words=_own_words(own) if keep_last is None else {},
        dropped=dropped[:SHOWN_ITEMS],
        kept=kept[:SHOWN_ITEMS],
        dropped_count=len(dropped),
        kept_count=report.kept,
        failed=[i for i in items if i.error],
        held=next((i.held for i in items if i.held), None),
        floor=(policy or RetentionSettings()).minimum_redundancy,
        keep_last=keep_last,
        applied=applied,
        shown=SHOWN_ITEMS,
    )


@router.post("/retention", dependencies=acting("admin"))
def retention_apply(
    request: Request,
    parts: Parts,
    database: Annotated[str, Form(min_length=1, max_length=255)],
    keep_last: Annotated[int | None, Form(ge=1, le=100_000)] = None,
) -> Response:
    """Apply retention to ``database`` now: delete what the preview listed (each deletion
    removes every stored piece first, then marks the row ``deleted``)."""
    report = prune.apply(
        parts.settings, parts.catalog, database=database, dry_run=False, keep_last=keep_last
    )
    return _retention_page(request, parts, database, report, keep_last, applied=True)


@router.get("/storage")
def storage_page(request: Request, viewer: Viewer, parts: Parts) -> Response:
    """Every storage target: reachable or not, free space, backups held."""
    return page(
        request,
        "storage.html",
        title="Storage targets",
        targets=targets.report(parts.settings, parts.catalog),
    )
