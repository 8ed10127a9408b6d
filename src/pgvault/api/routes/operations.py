"""Unattended operation over HTTP: schedules, retention, history, backup health, metrics.

``router`` (mounted under ``/api/v1`` like the others):

* ``GET  /schedules``                       viewer   configured jobs and next run times
* ``POST /retention/apply?dry_run=&keep_last=&database=``  admin   prune; dry run by default
* ``GET  /history?group_by=day&days=&database=``            viewer  backups per day
* ``GET  /health/backups``                  viewer   per database ok/warning/critical

``metrics_router`` (mounted at the root): ``GET /metrics`` (viewer; give Prometheus an API
token) in the Prometheus text format. Importing this module also adds a ``backups`` entry
to :data:`pgvault.api.routes.health.CHECKS` (the worst database status, no names).
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Response
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel

from pgvault.api.deps import CatalogDep, SettingsDep, require_role
from pgvault.api.routes import health
from pgvault.api.routes._common import ERRORS
from pgvault.catalog import Catalog
from pgvault.config.settings import Settings
from pgvault.operations import monitoring, prune, schedules

router = APIRouter(tags=["operations"], responses=ERRORS)
metrics_router = APIRouter(tags=["operations"], responses=ERRORS)


class ScheduleOut(BaseModel):
    """One configured job; ``next_runs`` in UTC (empty when disabled)."""

    kind: Literal["backup", "verify", "prune", "files"]
    database: str | None
    name: str
    cron: str
    timezone: str
    enabled: bool
    next_runs: list[datetime]


class PruneItemOut(BaseModel):
    """One backup's fate under retention; ``reasons`` names the rule."""

    database: str
    backup_id: str
    status: str
    trigger: str
    started_at: datetime
    size_bytes: int | None
    keep: bool
    reasons: list[str]
    deleted: bool
    error: str | None


class DayOut(BaseModel):
    """Backups of one database started on one UTC day, by status; bytes of completed ones."""

    day: date
    database: str
    completed: int
    failed: int
    interrupted: int
    running: int
    deleted: int
    total_bytes: int


class DatabaseHealthOut(BaseModel):
    """One database's backup health (times UTC, ages and staleness in seconds)."""

    database: str
    status: Literal["ok", "warning", "critical"]
    reasons: list[str]
    max_staleness_seconds: float
    last_success_at: datetime | None
    last_backup_id: str | None
    last_size_bytes: int | None
    last_duration_seconds: float | None
    age_seconds: float | None
    last_run_status: str | None
    last_run_at: datetime | None


class BackupHealthOut(BaseModel):
    """Every database's backup health; ``status`` is the worst."""

    status: Literal["ok", "warning", "critical"]
    checked_at: datetime
    databases: list[DatabaseHealthOut]


@router.get("/schedules", response_model=list[ScheduleOut], dependencies=[require_role("viewer")])
def list_schedules(
    settings: SettingsDep, count: Annotated[int, Query(ge=1, le=50)] = 3
) -> list[ScheduleOut]:
    """Configured backup schedules, restore drills and the cleanup, with next run times."""
    return [
        ScheduleOut.model_validate(info, from_attributes=True)
        for info in schedules.next_runs(settings, count=count)
    ]


@router.post(
    "/retention/apply",
    response_model=list[PruneItemOut],
    dependencies=[require_role("admin")],
)
def apply_retention(
    settings: SettingsDep,
    catalog: CatalogDep,
    dry_run: bool = True,
    keep_last: Annotated[int | None, Query(ge=1)] = None,
    database: str | None = None,
) -> list[PruneItemOut]:
    """Apply retention (the configured policies, or ad hoc "keep the last N"); with
    ``dry_run`` (the default) only report what would go and why."""
    items = prune.apply(settings, catalog, database=database, dry_run=dry_run, keep_last=keep_last)
    return [
        PruneItemOut.model_validate({**item.__dict__, "reasons": list(item.reasons)})
        for item in items
    ]


@router.get("/history", response_model=list[DayOut], dependencies=[require_role("viewer")])
def history(
    catalog: CatalogDep,
    group_by: Literal["day"] = "day",
    days: Annotated[int, Query(ge=1, le=3660)] = 30,
    database: str | None = None,
) -> list[DayOut]:
    """Backups grouped by UTC day and database, newest day first."""
    rows = monitoring.history(catalog, days=days, database=database)
    return [DayOut.model_validate(row, from_attributes=True) for row in rows]


@router.get(
    "/health/backups", response_model=BackupHealthOut, dependencies=[require_role("viewer")]
)
def backup_health(settings: SettingsDep, catalog: CatalogDep) -> BackupHealthOut:
    """Per database ``ok``/``warning``/``critical``: freshness, size drop, last run."""
    report = monitoring.health(settings, catalog)
    return BackupHealthOut.model_validate(report, from_attributes=True)


@metrics_router.get("/metrics", response_class=Response, dependencies=[require_role("viewer")])
def metrics(settings: SettingsDep, catalog: CatalogDep) -> Response:
    """Prometheus metrics, read from the catalog at each scrape."""
    return Response(monitoring.metrics_text(settings, catalog), media_type=CONTENT_TYPE_LATEST)


def _backups_check(settings: Settings, catalog: Catalog) -> dict[str, Any]:
    status = monitoring.health(settings, catalog).status
    return {"ok": status != "critical", "status": status}


health.CHECKS.setdefault("backups", _backups_check)
