"""``GET /health``: liveness and readiness; per-database detail for authenticated callers.

The body is built by :func:`report` from :data:`CHECKS` (public, name -> probe returning a
dict with ``ok``) and, for authenticated callers, ``databases`` from
:func:`pgvault.operations.monitoring.overview`. Other features add a check by appending to
:data:`CHECKS` (e.g. the scheduler's state).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool

from pgvault import storage
from pgvault.api.deps import CatalogDep, MaybeCaller, SettingsDep
from pgvault.api.routes._common import ERRORS
from pgvault.api.schemas import DatabaseOut, HealthOut
from pgvault.catalog import Catalog
from pgvault.catalog import jobs as job_rows
from pgvault.config.settings import Settings
from pgvault.errors import PgvaultError
from pgvault.operations import monitoring
from pgvault.postgres import tools

router = APIRouter(tags=["health"], responses=ERRORS)

Check = Callable[[Settings, Catalog], dict[str, Any]]


def _catalog(settings: Settings, catalog: Catalog) -> dict[str, Any]:
    job_rows.list_jobs(catalog, limit=1)
    return {"ok": True}


def _storage(settings: Settings, catalog: Catalog) -> dict[str, Any]:
    store = storage.resolve(settings)
    store.check_writable()
    return {"ok": True}


def _tool(program: str) -> Check:
    def probe(settings: Settings, catalog: Catalog) -> dict[str, Any]:
        found = tools.discover(program, settings.bin_dir)
        return {"ok": bool(found), "versions": [t.version for t in found]}

    return probe


CHECKS: dict[str, Check] = {
    "catalog": _catalog,
    "storage": _storage,
    "pg_dump": _tool("pg_dump"),
    "pg_restore": _tool("pg_restore"),
}


def report(settings: Settings, catalog: Catalog, detailed: bool) -> HealthOut:
    """Run every check (a failing one is reported, never raised); the checks and the
    databases read the catalog's newest rows once (:func:`monitoring.one_reading`)."""
    results: dict[str, dict[str, Any]] = {}
    with monitoring.one_reading():
        for name, probe in CHECKS.items():
            try:
                results[name] = probe(settings, catalog)
            except PgvaultError as exc:
                results[name] = {"ok": False, "detail": str(exc) if detailed else "failing"}
        summaries = monitoring.overview(settings, catalog) if detailed else None
    healthy = all(r.get("ok") for r in results.values())
    return HealthOut(
        status="ok" if healthy else "degraded",
        checks=results,
        databases=[DatabaseOut.of(s) for s in summaries] if summaries is not None else None,
    )


@router.get("/health", response_model=HealthOut)
async def health(settings: SettingsDep, catalog: CatalogDep, caller: MaybeCaller) -> HealthOut:
    """Catalog and storage reachable, pg_dump/pg_restore found (with versions); with
    credentials also each configured database's newest backup and its age."""
    return await run_in_threadpool(report, settings, catalog, caller is not None)
