"""``/audit`` (admins: who did what, filterable), ``/users`` and ``/tokens`` (owners: create,
change role, disable, revoke), with the API's access rules."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Literal
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import Response

from pgvault.catalog import accounts, audit
from pgvault.errors import ConfigError
from pgvault.service import tokens, users
from pgvault.web.deps import Parts, Viewer, acting, choice, require
from pgvault.web.render import PageRoute, page, redirect

router = APIRouter(route_class=PageRoute, include_in_schema=False)
AUDIT_PAGE = 100
Role = Literal["viewer", "operator", "admin", "owner"]
NOTICES = {
    "created": "User created.",
    "changed": "User changed (a disabled user's sessions end at once).",
    "deleted": "User removed.",
    "revoked": "API token revoked: it stops working at once.",
}


def _day(text: str | None, end: bool = False) -> datetime | None:
    """The start (or with ``end`` the end) of the UTC day ``YYYY-MM-DD``; None if empty.

    Raises:
        ConfigError: not a date.
    """
    if not text:
        return None
    try:
        value = date.fromisoformat(text)
    except ValueError as exc:
        raise ConfigError(f"{text!r} is not a day: write YYYY-MM-DD") from exc
    start = datetime.combine(value, time(), tzinfo=UTC)
    return start + timedelta(days=1) if end else start


@router.get("/audit", dependencies=[require("admin")])
def audit_log(
    request: Request,
    parts: Parts,
    actor: Annotated[str | None, Query(max_length=255)] = None,
    action: Annotated[str | None, Query(max_length=255)] = None,
    result: Annotated[str | None, Query(max_length=16)] = None,
    since: Annotated[str | None, Query(max_length=10)] = None,
    until: Annotated[str | None, Query(max_length=10)] = None,
    offset: Annotated[int, Query(ge=0, le=1_000_000_000)] = 0,
) -> Response:
    """Audit events newest first (days are UTC; ``until`` includes its day)."""
    result = choice(result, ("ok", "denied", "failed"), "result")
    events = audit.search(
        parts.catalog,
        actor=actor or None,
        action=action or None,
        result=result,
        since=_day(since),
        until=_day(until, end=True),
        limit=AUDIT_PAGE + 1,
        offset=offset,
    )
    filters = {
        k: v
        for k, v in {
            "actor": actor,
            "action": action,
            "result": result,
            "since": since,
            "until": until,
        }.items()
        if v
    }
    return page(
        request,
        "audit.html",
        title="Audit log",
        events=events[:AUDIT_PAGE],
        filters=filters,
        newer=("/audit?" + urlencode({**filters, "offset": max(0, offset - AUDIT_PAGE)}))
        if offset
        else None,
        older=("/audit?" + urlencode({**filters, "offset": offset + AUDIT_PAGE}))
        if len(events) > AUDIT_PAGE
        else None,
    )


@router.get("/users", dependencies=[require("owner")])
def user_list(
    request: Request,
    viewer: Viewer,
    parts: Parts,
    done: Annotated[str | None, Query(max_length=32)] = None,
) -> Response:
    """Users and API tokens."""
    return page(
        request,
        "users.html",
        title="Users and API tokens",
        users=users.list_all(parts.catalog),
        tokens=accounts.list_api_tokens(parts.catalog),
        notice=NOTICES.get(done or ""),
        created_token=None,
    )


@router.post("/users", dependencies=acting("owner"))
def create_user(
    viewer: Viewer,
    parts: Parts,
    username: Annotated[str, Form(min_length=1, max_length=64)],
    password: Annotated[str, Form(min_length=1, max_length=1024)],
    role: Annotated[Role, Form()] = "viewer",
) -> Response:
    """Create a user (refused if the name is taken or the password too weak)."""
    users.create(parts.catalog, username, password, role, created_by=viewer.actor)
    return redirect("/users?done=created")


@router.post("/users/{username}", dependencies=acting("owner"))
def change_user(
    username: str,
    parts: Parts,
    role: Annotated[Role | None, Form()] = None,
    disabled: Annotated[Literal["yes", "no"] | None, Form()] = None,
) -> Response:
    """Change a user's role, or disable / enable them (never the last owner)."""
    users.update(
        parts.catalog,
        username,
        role=role,
        disabled=None if disabled is None else disabled == "yes",
    )
    return redirect("/users?done=changed")


@router.post("/users/{username}/delete", dependencies=acting("owner"))
def delete_user(username: str, parts: Parts) -> Response:
    """Remove a user (never the last owner)."""
    users.delete(parts.catalog, username)
    return redirect("/users?done=deleted")


@router.post("/tokens", dependencies=acting("owner"))
def create_token(
    request: Request,
    viewer: Viewer,
    parts: Parts,
    name: Annotated[str, Form(min_length=1, max_length=255)],
    role: Annotated[Role, Form()] = "viewer",
    expires_days: Annotated[int | None, Form(ge=1, le=3650)] = None,
) -> Response:
    """Create an API token and show it once."""
    plain, record = tokens.create_api_token(
        parts.catalog, name, role, created_by=viewer.actor, expires_days=expires_days
    )
    request.state.audit_target = f"token={record.id}"
    return page(
        request,
        "users.html",
        status=201,
        title="Users and API tokens",
        users=users.list_all(parts.catalog),
        tokens=accounts.list_api_tokens(parts.catalog),
        notice=f"API token {record.name} created: copy it now, it is not shown again.",
        created_token=plain,
    )


@router.post("/tokens/{token_id}/revoke", dependencies=acting("owner"))
def revoke_token(token_id: str, parts: Parts) -> Response:
    """Revoke an API token at once."""
    tokens.revoke_api_token(parts.catalog, token_id)
    return redirect("/users?done=revoked")
