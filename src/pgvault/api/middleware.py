"""The service's ASGI middleware: the audit log, and the guards every response passes.

:class:`AuditMiddleware` (pure ASGI, no buffering: downloads and event streams pass through
as they are): after the response has started, it appends who
(``request.state.principal``, or the actor a handler named, ``request.state.audit_actor``),
what (method and route template), which target (path parameters, tokens masked, plus
``request.state.audit_target``), the source address, the result and the status. Handlers may
add ``request.state.audit_detail``.

:class:`GuardMiddleware` (outermost): JSON bodies over ``api.max_json_bytes`` are refused
with 413 before a handler sees them; every response carries ``X-Content-Type-Options:
nosniff``, ``Referrer-Policy: no-referrer``, ``X-Frame-Options: DENY`` and a
``Content-Security-Policy`` (none at all for the JSON API; the docs pages may load their
own scripts and styles), and ``Cache-Control: no-store`` where tokens, credentials or
backups pass; a token in a path (``/downloads/<token>``) is masked before the server's
access log sees it.
"""

from __future__ import annotations

import json
from typing import Any

import anyio.to_thread
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pgvault import redact
from pgvault.catalog import Catalog, audit

AUDITED_READS = ("/download", "/dump", "/downloads/")
SECRET_PARAMS = ("token",)
API_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
DOCS_CSP = (
    "default-src 'self'; script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; "
    "style-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; img-src 'self' data: "
    "https://fastapi.tiangolo.com; frame-ancestors 'none'; base-uri 'none'"
)
DOCS_PATHS = ("/docs", "/redoc")
NO_STORE = ("/auth/", "/setup", "/tokens", "/users", "/download", "/downloads/", "/dump")


def mask(value: str) -> str:
    """The first 6 characters of a secret and an ellipsis: enough to tell two apart."""
    return value[:6] + "…" if len(value) > 6 else "…"


class AuditMiddleware:
    """Writes an audit event for each non-GET request and each download."""

    def __init__(self, app: ASGIApp, catalog: Catalog) -> None:
        self.app = app
        self.catalog = catalog

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method = scope["method"]
        path: str = scope["path"]
        audited = method not in ("GET", "HEAD", "OPTIONS") or any(
            mark in path for mark in AUDITED_READS
        )
        if not audited:
            await self.app(scope, receive, send)
            return
        scope.setdefault("state", {})
        status = {"code": 500}

        async def keep_status(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, keep_status)
        finally:
            await anyio.to_thread.run_sync(self._write, scope, status["code"])

    def _write(self, scope: Scope, code: int) -> None:
        state: dict[str, Any] = scope.get("state", {})
        principal = state.get("principal")
        actor = principal.actor if principal is not None else state.get("audit_actor")
        template = _template(scope)
        params = scope.get("path_params") or {}
        target = ", ".join(
            f"{k}={mask(str(v)) if k in SECRET_PARAMS else v}" for k, v in params.items()
        )
        extra = state.get("audit_target")
        if extra:
            target = f"{target}, {extra}" if target else str(extra)
        client = scope.get("client")
        audit.record(
            self.catalog,
            actor=actor,
            action=f"{scope['method']} {template}",
            target=target or None,
            address=client[0] if client else None,
            result=audit.result_of(code),
            status_code=code,
            detail=state.get("audit_detail"),
        )


class GuardMiddleware:
    """Limits JSON bodies, adds the security headers, masks tokens in logged paths."""

    def __init__(self, app: ASGIApp, max_json_bytes: int) -> None:
        self.app = app
        self.max_json_bytes = max_json_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = str(scope["path"])
        headers = _headers_of(scope)
        is_json = headers.get("content-type", "").split(";")[0].strip().endswith("json")
        length = headers.get("content-length", "")
        if is_json and length.isdigit() and int(length) > self.max_json_bytes:
            await _too_large(send, self.max_json_bytes)
            return
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            if is_json and message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_json_bytes:
                    raise _BodyTooLarge
            return message

        async def guarded(message: Message) -> None:
            if message["type"] == "http.response.start":
                own = list(message.get("headers", []))
                named = {name.lower() for name, _ in own}  # a page's own headers stay
                extra = [h for h in _security_headers(path) if h[0] not in named]
                message["headers"] = [*own, *extra]
                masked = redact.mask_path(path)
                if masked != path:  # what the server's access log prints, after routing
                    scope["path"] = masked
                    scope["raw_path"] = masked.encode()
                    scope["query_string"] = b""
            await send(message)

        try:
            await self.app(scope, limited if is_json else receive, guarded)
        except _BodyTooLarge:
            await _too_large(send, self.max_json_bytes)


class _BodyTooLarge(Exception):
    """A JSON body grew past the limit while it was read."""


def _headers_of(scope: Scope) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}


def _security_headers(path: str) -> list[tuple[bytes, bytes]]:
    docs = path.startswith(DOCS_PATHS) or path == "/openapi.json"
    found = [
        (b"x-content-type-options", b"nosniff"),
        (b"referrer-policy", b"no-referrer"),
        (b"x-frame-options", b"DENY"),
        (b"content-security-policy", (DOCS_CSP if docs else API_CSP).encode()),
    ]
    if any(mark in path for mark in NO_STORE):
        found.append((b"cache-control", b"no-store"))
    return found


async def _too_large(send: Send, limit: int) -> None:
    body = json.dumps(
        {
            "error": "payload too large",
            "detail": f"a JSON body may hold at most {limit} bytes (api.max_json_bytes)",
        }
    ).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += _security_headers("")
    await send({"type": "http.response.start", "status": 413, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _template(scope: Scope) -> str:
    """The matched route's path template with its router prefix (``/api/v1/users/{username}``):
    the route knows only its own part, so the prefix is taken from the concrete path."""
    path = str(scope["path"])
    own = getattr(scope.get("route"), "path_format", None)
    if not isinstance(own, str) or not own:
        return path
    parts = path.rstrip("/").split("/")
    depth = len(own.rstrip("/").split("/")) - 1
    return "/".join(parts[: len(parts) - depth]) + own
