"""``/login`` (the sign-in form) and ``/logout``: the dashboard's session cookie."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import Response

from pgvault.errors import AuthError, http_status
from pgvault.service import users
from pgvault.web.deps import (
    SESSION_COOKIE,
    SESSION_LIFETIME,
    Parts,
    Viewer,
    acting,
    checked_form,
    end_session,
    new_login_nonce,
    start_session,
)
from pgvault.web.render import PageRoute, page, redirect

router = APIRouter(route_class=PageRoute, include_in_schema=False)


def _local(target: str | None) -> str:
    """``target`` if it is a path on this site (never another host), else ``/``."""
    if target and target.startswith("/") and not target.startswith(("//", "/\\")):
        return target
    return "/"


def _login_page(
    request: Request, parts: Parts, *, status: int = 200, error: str | None = None, **values: str
) -> Response:
    response = Response()
    new_login_nonce(request, response)
    answer = page(
        request,
        "login.html",
        status=status,
        title="Sign in",
        error=error,
        first_run=not users.list_all(parts.catalog),
        next=_local(request.query_params.get("next") or values.pop("next", None)),
        username=values.get("username", ""),
        notice="You are signed out." if request.query_params.get("bye") else None,
    )
    for cookie in response.headers.getlist("set-cookie"):
        answer.headers.append("set-cookie", cookie)
    return answer


@router.get("/login")
def login_form(request: Request, parts: Parts) -> Response:
    """The sign-in form (a signed-in user goes on to the overview)."""
    token = request.cookies.get(SESSION_COOKIE)
    if token:
        try:
            parts.tokens.session_principal(token)
            return redirect(_local(request.query_params.get("next")))
        except AuthError:
            pass
    return _login_page(request, parts)


@router.post("/login", dependencies=[Depends(checked_form)])
def login(
    request: Request,
    parts: Parts,
    username: Annotated[str, Form(max_length=255)],
    password: Annotated[str, Form(max_length=1024)],
    next: Annotated[str, Form(max_length=2000)] = "/",  # noqa: A002 - the form's field
) -> Response:
    """Check the user name and password (throttled like the API's login) and start a
    session; a refusal is shown on the form."""
    request.state.audit_actor = username
    address = request.client.host if request.client else None
    try:
        user = users.authenticate(parts.settings, parts.catalog, username, password, address)
    except AuthError as exc:
        status = http_status(exc)[0]
        return _login_page(
            request, parts, status=status, error=str(exc), username=username, next=next
        )
    response = redirect(_local(next))
    start_session(request, response, parts.tokens.sign_session(user, SESSION_LIFETIME))
    return response


@router.post("/logout", dependencies=acting("viewer"))
def logout(principal: Viewer, parts: Parts) -> Response:
    """End the session: every session of the user ends (as the API's logout does without a
    refresh token), and the cookie is removed."""
    parts.tokens.logout(principal.id, None)
    response = redirect("/login?bye=1")
    end_session(response)
    return response
