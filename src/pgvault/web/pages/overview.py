"""``/``: one card per configured database (health with its reasons, the newest backup, the
next scheduled run, sparklines of the last backups' sizes and durations, running jobs)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from fastapi import APIRouter, Request
from fastapi.responses import Response

from pgvault.catalog.jobs import JobRecord
from pgvault.catalog.records import BackupRecord
from pgvault.operations import monitoring, schedules
from pgvault.operations.retention import zone
from pgvault.web.deps import Parts, Viewer
from pgvault.web.render import PageRoute, page

router = APIRouter(route_class=PageRoute, include_in_schema=False)
SPARK_BACKUPS = 30


@dataclass
class Card:
    """What one database's card shows."""

    summary: monitoring.DatabaseSummary
    next_run: datetime | None
    next_zone: str | None
    recent: list[BackupRecord]
    jobs: list[JobRecord]

    @property
    def sizes(self) -> list[float | None]:
        """Stored sizes (bytes) of the recent completed backups, oldest first."""
        return [r.size_bytes for r in reversed(self.recent)]

    @property
    def durations(self) -> list[float | None]:
        """Durations (seconds) of the recent completed backups, oldest first."""
        return [r.duration_seconds for r in reversed(self.recent)]


def _next_runs(parts: Parts) -> dict[str, tuple[datetime, str]]:
    """Per database its next scheduled backup and that schedule's zone."""
    found: dict[str, tuple[datetime, str]] = {}
    for info in schedules.next_runs(parts.settings, count=1):
        if info.kind != "backup" or info.database is None or not info.next_runs:
            continue
        known = found.get(info.database)
        if known is None or info.next_runs[0] < known[0]:
            found[info.database] = (info.next_runs[0], info.timezone)
    return found


@router.get("/")
def overview(request: Request, viewer: Viewer, parts: Parts) -> Response:
    """The overview; it reloads itself when a job it shows ends."""
    now = datetime.now(UTC)
    running = parts.runner.list(status="running", limit=50)
    next_runs = _next_runs(parts)
    cards = []
    for summary in monitoring.overview(parts.settings, parts.catalog, now):
        recent = parts.catalog.list_backups(
            database=summary.name, status="completed", limit=SPARK_BACKUPS
        )
        when, tz = next_runs.get(summary.name, (None, None))
        cards.append(
            Card(
                summary=summary,
                next_run=when,
                next_zone=tz,
                recent=recent,
                jobs=[j for j in running if j.database == summary.name],
            )
        )
    return page(
        request,
        "overview.html",
        title="Overview",
        cards=cards,
        zone=zone,
        running=running,
    )
