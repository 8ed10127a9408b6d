"""The web dashboard: server-rendered pages (Jinja2) served by ``pgvault serve`` at ``/`` in
the API's process, with a little JavaScript of our own for live progress (the jobs' server-sent
events), SVG sparklines drawn by the server, and every asset inside this package.

Owns pages, sign-in (session cookie, CSRF), what each role sees, and the offline API docs. It
calls the same domain functions as the API (never the API over HTTP) and holds no backup,
restore or policy logic: a domain error becomes a message on the page.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from pgvault.web.deps import WebParts
from pgvault.web.render import STATIC

__all__ = ["WebParts", "mount"]


def mount(app: FastAPI, parts: WebParts) -> None:
    """Add the dashboard's pages, its static files (``/static``) and the API docs
    (``/docs``, assets at ``/docs/assets``) to ``app``."""
    import swagger_ui_bundle  # type: ignore[import-untyped]

    from pgvault.web.pages import ROUTERS

    app.state.web = parts
    app.mount("/static", StaticFiles(directory=STATIC), name="web-static")
    app.mount(
        "/docs/assets",
        StaticFiles(directory=str(swagger_ui_bundle.swagger_ui_path)),
        name="docs-assets",
    )
    for router in ROUTERS:
        app.include_router(router)
