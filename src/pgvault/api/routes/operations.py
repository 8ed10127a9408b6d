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

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Response
from prometheus_client import CONTENT_TYPE_LATEST

from pgvault.api.deps import CatalogDep, SettingsDep, require_role
from pgvault.api.routes import health
from pgvault.api.routes._common import ERRORS
from pgvault.catalog import Catalog
from pgvault.catalog.stats import DayCounts
from pgvault.config.settings import Settings
from pgvault.operations import monitoring, prune, schedules

router = APIRouter(tags=["operations"], responses=ERRORS)
metrics_router = APIRouter(tags=["operations"], responses=ERRORS)


@router.get(
    "/schedules",
    response_model=list[schedules.ScheduleInfo],
    dependencies=[require_role("viewer")],
)
def list_schedules(
    settings: SettingsDep, count: Annotated[int, Query(ge=1, le=50)] = 3
) -> list[schedules.ScheduleInfo]:
    """Configured backup schedules, restore drills and the cleanup, with next run times
    (UTC; each schedule's ``timezone`` says how its cron is read)."""
    return schedules.next_runs(settings, count=count)


@router.post(
    "/retention/apply",
    response_model=list[prune.PruneItem],
    dependencies=[require_role("admin")],
)
def apply_retention(
    settings: SettingsDep,
    catalog: CatalogDep,
    dry_run: bool = True,
    keep_last: Annotated[int | None, Query(ge=1)] = None,
    database: str | None = None,
) -> list[prune.PruneItem]:
    """Apply retention (the configured policies, or ad hoc "keep the last N"); with
    ``dry_run`` (the default) only report what would go and why. The
    ``minimum_redundancy`` newest completed backups are never deleted, and nothing is
    while retention is held (``held``: the newest backup attempt failed, or no completed
    backup within the policy's shortest period)."""
    report = prune.apply(
        settings, catalog, database=database, dry_run=dry_run, keep_last=keep_last, every_row=True
    )
    return report.items


@router.get("/history", response_model=list[DayCounts], dependencies=[require_role("viewer")])
def history(
    catalog: CatalogDep,
    group_by: Literal["day"] = "day",
    days: Annotated[int, Query(ge=1, le=3660)] = 30,
    database: str | None = None,
) -> list[DayCounts]:
    """Backups grouped by UTC day and database, newest day first."""
    return catalog.history(days=days, database=database)


@router.get(
    "/health/backups",
    response_model=monitoring.HealthReport,
    dependencies=[require_role("viewer")],
)
def backup_health(settings: SettingsDep, catalog: CatalogDep) -> monitoring.HealthReport:
    """Per database ``ok``/``warning``/``critical``: freshness, size drop, last run."""
    return monitoring.health(settings, catalog)


@metrics_router.get("/metrics", response_class=Response, dependencies=[require_role("viewer")])
def metrics(settings: SettingsDep, catalog: CatalogDep) -> Response:
    """Prometheus metrics, read from the catalog at each scrape."""
    return Response(monitoring.metrics_text(settings, catalog), media_type=CONTENT_TYPE_LATEST)


def _backups_check(settings: Settings, catalog: Catalog) -> dict[str, Any]:
    status = monitoring.health(settings, catalog).status
    return {"ok": status != "critical", "status": status}


health.CHECKS.setdefault("backups", _backups_check)
