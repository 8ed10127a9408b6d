"""The audit middleware: every mutating request (and every download) leaves one event.

A pure ASGI middleware (no buffering: downloads and event streams pass through as they
are). After the response has started, it appends who (``request.state.principal``, or the
user name a login tried, ``request.state.audit_actor``), what (method and route template),
which target (path parameters, plus ``request.state.audit_target``), the source address,
the result and the status. Handlers may add ``request.state.audit_detail``.
"""

from __future__ import annotations

from typing import Any

import anyio.to_thread
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pgvault.catalog import Catalog, audit

AUDITED_READS = ("/download", "/dump", "/downloads/")


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
        target = ", ".join(f"{k}={v}" for k, v in params.items())
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
