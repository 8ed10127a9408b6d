"""The FastAPI application: :func:`create_app` wires settings, catalog, token issuer and job
runner into the routers of :mod:`pgvault.api.routes` (all under ``/api/v1``).

No backup or restore logic lives here or in the routes: they call the domain packages
(``backups``, ``restores``, ``operations``, ``service``) and errors become HTTP answers in
:mod:`pgvault.api.errors` only.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.concurrency import run_in_threadpool

from pgvault import web
from pgvault.api import errors
from pgvault.api.deps import Service
from pgvault.api.middleware import AuditMiddleware, GuardMiddleware
from pgvault.api.routes import ROUTERS
from pgvault.api.routes.operations import metrics_router
from pgvault.catalog import Catalog
from pgvault.config.settings import Settings
from pgvault.operations import startup
from pgvault.service.jobs import JobRunner
from pgvault.service.tokens import Tokens, load_secret

log = logging.getLogger(__name__)

PREFIX = "/api/v1"


def create_app(
    settings: Settings,
    *,
    catalog: Catalog | None = None,
    secret: str | None = None,
    dev: bool = False,
) -> FastAPI:
    """Build the service.

    Args:
        catalog: an open catalog (default: open ``settings.catalog_location``).
        secret: the signing secret (default: :func:`pgvault.service.tokens.load_secret`).
        dev: allow a generated throwaway secret when none is configured.

    Raises:
        ConfigError: no signing secret (and not ``dev``).
        CatalogError: the catalog cannot be opened.
    """
    secret = secret or load_secret(settings, dev=dev)
    catalog = catalog or Catalog.open(settings.catalog_location)
    startup.recover(settings, catalog)
    runner = JobRunner(settings, catalog)
    runner.recover()
    service = Service(settings, catalog, runner, Tokens(settings, catalog, secret), dev)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        # The ~100 MiB of modules and app objects built so far live as long as the process:
        # moved to the permanent generation (Python docs, gc.freeze), the cyclic collector
        # stops re-scanning them, and its full collections no longer pause a request for
        # 0.1-0.3 s on this kind of machine (seen at random in bench/bench_catalog.py).
        gc.collect()
        gc.freeze()
        yield
        await run_in_threadpool(runner.shutdown)

    app = FastAPI(
        title="pgvault",
        version="1",
        summary="PostgreSQL backups you can restore: backups, restores, jobs, audit.",
        openapi_url="/openapi.json",
        docs_url=None,  # served offline by the web dashboard (pgvault.web)
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.service = service
    errors.install(app)
    for router in ROUTERS:
        app.include_router(router, prefix=PREFIX)
    app.include_router(metrics_router)  # /metrics at the root, where Prometheus looks
    web.mount(app, web.WebParts(settings, catalog, runner, service.tokens))  # / and /docs
    app.add_middleware(AuditMiddleware, catalog=catalog)
    app.add_middleware(GuardMiddleware, max_json_bytes=settings.api.max_json_bytes)
    return app
