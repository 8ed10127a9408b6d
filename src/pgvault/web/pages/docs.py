"""``/docs``: the API's Swagger UI, served from the ``swagger-ui-bundle-v2`` package's files
(``/docs/assets``) and started by our own script, so it works with no internet and under a
Content-Security-Policy without inline scripts (Swagger UI sets inline styles, so this page
alone allows them)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from pgvault.web.render import CSP, PageRoute, templates

router = APIRouter(route_class=PageRoute, include_in_schema=False)
DOCS_CSP = CSP.replace("style-src 'self'", "style-src 'self' 'unsafe-inline'")


@router.get("/docs")
def docs(request: Request) -> Response:
    """Swagger UI of ``/openapi.json`` (public, like the schema itself)."""
    html = templates.get_template("docs.html").render()
    return Response(html, media_type="text/html", headers={"Content-Security-Policy": DOCS_CSP})
