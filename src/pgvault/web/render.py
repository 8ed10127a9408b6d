"""Rendering pages: the Jinja2 templates, the headers every page carries, and errors as pages.

Every route of the dashboard uses :class:`PageRoute`, which answers a pgvault error with the
page's message (the status from :func:`pgvault.errors.http_status`), a missing session with
a redirect to the sign-in page, an invalid form with 422, and anything unexpected with a
500 page naming a log reference: never a stack trace or a JSON body. Every answer gets the
security headers of :data:`HEADERS`, with a Content-Security-Policy that allows scripts,
styles, images and connections from the server's own origin only (no inline script).
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.routing import APIRoute
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from pgvault.errors import PgvaultError, http_status
from pgvault.web import format as fmt
from pgvault.web.deps import SignInNeeded, allowed, csrf_token

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
"""Headers of every page (the docs page relaxes ``style-src`` for Swagger UI's own styles)."""

ROLE_NAMES = ("viewer", "operator", "admin", "owner")

templates = Environment(
    loader=PackageLoader("pgvault.web", "templates"),
    autoescape=select_autoescape(default=True),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
templates.filters.update(
    size=fmt.size,
    rate=fmt.rate,
    duration=fmt.duration,
    moment=fmt.moment,
    age=fmt.age,
)
templates.globals.update(sparkline=fmt.svg_sparkline, roles=ROLE_NAMES)


def page(request: Request, template: str, *, status: int = 200, **values: Any) -> HTMLResponse:
    """Render ``template`` for ``request`` with the user, the forms' CSRF token and ``can``
    (role check) in its context, plus ``values``."""
    user = getattr(request.state, "principal", None)
    context = {
        "request": request,
        "path": request.url.path,
        "user": user,
        "can": lambda role: allowed(user, role),
        "csrf": csrf_token(request),
        "notice": None,
        "error": None,
        "error_title": None,
        **values,
    }
    html = templates.get_template(template).render(context)
    return HTMLResponse(html, status_code=status)


def error_page(request: Request, status: int, title: str, message: str) -> HTMLResponse:
    """The page of an error that has no better place (a form's page shows its own)."""
    return page(request, "error.html", status=status, title=title, error=message, error_title=title)


def _sign_in_redirect(request: Request) -> Response:
    target = request.url.path
    if request.url.query:
        target += "?" + request.url.query
    where = "/login" if target == "/" else f"/login?next={quote(target, safe='')}"
    return RedirectResponse(where, status_code=303)


Handler = Callable[[Request], Coroutine[Any, Any, Response]]


class PageRoute(APIRoute):
    """A dashboard route: domain errors become pages, every answer gets :data:`HEADERS`."""

    def get_route_handler(self) -> Handler:
        """Wrap FastAPI's handler of this route."""
        inner = super().get_route_handler()

        async def handler(request: Request) -> Response:
            try:
                response = await inner(request)
            except SignInNeeded:
                response = _sign_in_redirect(request)
            except PgvaultError as exc:
                status, title = http_status(exc)
                if status >= 500:
                    log.error("%s %s failed: %s", request.method, request.url.path, exc)
                response = error_page(request, status, title, str(exc))
            except RequestValidationError as exc:
                response = error_page(request, 422, "invalid request", _invalid(exc))
            except Exception:
                reference = secrets.token_hex(4)
                log.exception(
                    "unexpected error %s in %s %s", reference, request.method, request.url.path
                )
                response = error_page(
                    request,
                    500,
                    "internal error",
                    f"unexpected server error (reference {reference} in the server log)",
                )
            for name, value in HEADERS.items():
                response.headers.setdefault(name, value)
            return response

        return handler


def _invalid(exc: RequestValidationError) -> str:
    parts = []
    for problem in exc.errors()[:5]:
        where = ".".join(str(p) for p in problem.get("loc", ()) if p not in ("body", "query"))
        parts.append(f"{where or 'form'}: {problem.get('msg', 'invalid')}")
    return "; ".join(parts) + ": correct the form and send it again"


def redirect(url: str) -> RedirectResponse:
    """303 to ``url`` (after a form: the browser GETs the next page)."""
    return RedirectResponse(url, status_code=303)
