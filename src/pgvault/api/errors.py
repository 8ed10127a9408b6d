"""The JSON answers of pgvault's errors (statuses from :data:`pgvault.errors.HTTP_STATUSES`).

Every error body is ``{"error": "<short title>", "detail": "<what happened, what to do>"}``
with no stack trace and no secret (messages of :class:`PgvaultError` are written for users).
Unexpected exceptions answer 500 with a reference to the server log.
"""

from __future__ import annotations

import logging
import secrets

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from pgvault import errors

log = logging.getLogger(__name__)


def status_of(exc: errors.PgvaultError) -> tuple[int, str]:
    """``(HTTP status, error title)`` of a pgvault error (from the one table,
    :data:`pgvault.errors.HTTP_STATUSES`)."""
    return errors.http_status(exc)


def error_response(status: int, title: str, detail: str, **headers: str) -> JSONResponse:
    """The one shape of every error answer."""
    return JSONResponse({"error": title, "detail": detail}, status_code=status, headers=headers)


async def _pgvault_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, errors.PgvaultError)
    status, title = status_of(exc)
    headers: dict[str, str] = {}
    if status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    if isinstance(exc, errors.Throttled):
        headers["Retry-After"] = str(exc.retry_after)
    if status >= 500:
        log.error("%s %s failed: %s", request.method, request.url.path, exc)
    return error_response(status, title, str(exc), **headers)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    parts = []
    for problem in exc.errors()[:5]:
        where = ".".join(str(p) for p in problem.get("loc", ()) if p != "body")
        parts.append(f"{where or 'body'}: {problem.get('msg', 'invalid')}")
    return error_response(422, "invalid request", "; ".join(parts) or "invalid request")


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    title = {404: "not found", 405: "method not allowed"}.get(exc.status_code, "error")
    detail = exc.detail if isinstance(exc.detail, str) else title
    if exc.status_code == 404 and detail == "Not Found":
        detail = f"no such endpoint {request.url.path}: see /docs"
    return error_response(exc.status_code, title, detail, **(exc.headers or {}))


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    reference = secrets.token_hex(4)
    log.exception("unexpected error %s in %s %s", reference, request.method, request.url.path)
    return error_response(
        500, "internal error", f"unexpected server error (reference {reference} in the log)"
    )


def install(app: FastAPI) -> None:
    """Register the handlers on ``app``."""
    app.add_exception_handler(errors.PgvaultError, _pgvault_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
