"""The dashboard's pages, one module per part of the site; :data:`ROUTERS` in the order
they are mounted (``/backups/new`` before ``/backups/{id}``)."""

from __future__ import annotations

from fastapi import APIRouter

from pgvault.web.pages import (
    admin,
    auth,
    backups,
    docs,
    jobs,
    new_backup,
    operations,
    overview,
    restore,
)

ROUTERS: list[APIRouter] = [
    auth.router,
    overview.router,
    new_backup.router,
    backups.router,
    restore.router,
    jobs.router,
    operations.router,
    admin.router,
    docs.router,
]
