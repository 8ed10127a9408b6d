"""One module per resource; each exposes ``router``. :data:`ROUTERS` is what
:func:`pgvault.api.app.create_app` mounts under ``/api/v1`` (add yours to the list)."""

from __future__ import annotations

from fastapi import APIRouter

from pgvault.api.routes.audit import router as audit_router
from pgvault.api.routes.auth import router as auth_router
from pgvault.api.routes.backups import router as backups_router
from pgvault.api.routes.databases import router as databases_router
from pgvault.api.routes.files import router as files_router
from pgvault.api.routes.health import router as health_router
from pgvault.api.routes.jobs import router as jobs_router
from pgvault.api.routes.operations import router as operations_router
from pgvault.api.routes.physical import router as physical_router
from pgvault.api.routes.restores import router as restores_router
from pgvault.api.routes.stats import router as stats_router
from pgvault.api.routes.tokens import router as tokens_router
from pgvault.api.routes.users import router as users_router

ROUTERS: list[APIRouter] = [
    health_router,
    auth_router,
    users_router,
    tokens_router,
    databases_router,
    backups_router,
    restores_router,
    jobs_router,
    stats_router,
    audit_router,
    operations_router,
    files_router,
    physical_router,
]
