"""Who is looking, and whether a form may act: the dashboard's session cookie, roles and CSRF.

* Session: the cookie ``pgvault_session`` holds a session token of
  :meth:`pgvault.service.tokens.Tokens.sign_session` (HttpOnly, ``SameSite=Strict``, ``Secure``
  when the page is served over https, :data:`SESSION_HOURS` long). Signing out ends every
  session of the user, as ``POST /api/v1/auth/logout`` without a refresh token does.
* Roles: the API's (viewer < operator < admin < owner). A page hides what the role may not
  do; every action checks the role again (:func:`require`) and answers 403 otherwise.
* CSRF: every form carries ``csrf``, an HMAC of the session token (OWASP's signed
  double-submit); the sign-in form's is bound to a short-lived ``pgvault_login`` nonce cookie.
  A form without a valid one is refused (403) before anything runs.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.responses import Response

from pgvault.catalog import Catalog
from pgvault.config.settings import Settings
from pgvault.errors import AuthError, ConfigError, PermissionDenied
from pgvault.service.jobs import JobRunner
from pgvault.service.tokens import Principal, Tokens
from pgvault.service.users import role_allows

SESSION_COOKIE = "pgvault_session"
LOGIN_COOKIE = "pgvault_login"
SESSION_HOURS = 12
LOGIN_NONCE_SECONDS = 1800
SESSION_LIFETIME = timedelta(hours=SESSION_HOURS)


@dataclass(frozen=True)
class WebParts:
    """What the pages use, shared with the API of the same process (``app.state.web``)."""

    settings: Settings
    catalog: Catalog
    runner: JobRunner
    tokens: Tokens


class SignInNeeded(AuthError):
    """No valid session: the page answers with a redirect to the sign-in page."""


class FormRefused(PermissionDenied):
    """A form without a valid CSRF token (forged elsewhere, or its page is too old)."""


def get_parts(request: Request) -> WebParts:
    """The parts of this app (set by :func:`pgvault.web.mount`)."""
    parts = request.app.state.web
    assert isinstance(parts, WebParts)
    return parts


Parts = Annotated[WebParts, Depends(get_parts)]


def viewer(request: Request, parts: Parts) -> Principal:
    """The signed-in user (also left in ``request.state.principal`` for the audit log).

    Raises:
        SignInNeeded: no cookie, or its session ended or expired.
    """
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        raise SignInNeeded("sign in to continue")
    try:
        principal = parts.tokens.session_principal(token)
    except AuthError as exc:
        raise SignInNeeded(f"your session ended: sign in again ({exc})") from exc
    request.state.principal = principal
    request.state.session = token
    return principal


Viewer = Annotated[Principal, Depends(viewer)]


def allowed(principal: Principal | None, role: str) -> bool:
    """Whether ``principal`` has ``role`` or a higher one (the templates' ``can``)."""
    return principal is not None and role_allows(principal.role, role)


def require(role: str) -> Any:
    """A dependency: the signed-in user, who must have ``role`` or higher.

    Raises (when resolved):
        SignInNeeded: not signed in.
        PermissionDenied: the role is too low (403).
    """

    def check(principal: Viewer) -> Principal:
        if not allowed(principal, role):
            raise PermissionDenied(
                f"this needs the {role} role and {principal.name} has {principal.role}: "
                "ask an owner for a higher role"
            )
        return principal

    return Depends(check)


def choice(value: str | None, allowed: tuple[str, ...], what: str) -> str | None:
    """A filter's value: None when empty (the form's "all"), else one of ``allowed``.

    Raises:
        ConfigError: any other value (the message lists the allowed ones).
    """
    if not value:
        return None
    if value not in allowed:
        raise ConfigError(f"unknown {what} {value!r}: choose one of {', '.join(allowed)}")
    return value


def csrf_token(request: Request) -> str:
    """The CSRF token for this page's forms (bound to the session, or to the sign-in
    nonce on the sign-in page)."""
    parts = get_parts(request)
    session = getattr(request.state, "session", None)
    if session:
        return parts.tokens.sign("csrf", session)
    nonce = getattr(request.state, "login_nonce", None) or request.cookies.get(LOGIN_COOKIE)
    return parts.tokens.sign("login", nonce) if nonce else ""


async def checked_form(request: Request, parts: Parts) -> None:
    """Refuse a posted form whose ``csrf`` field is not this session's token.

    Raises:
        FormRefused: missing or wrong token (nothing runs).
    """
    form = await request.form()
    given = form.get("csrf")
    session = getattr(request.state, "session", None)
    bound, purpose = (session, "csrf") if session else (request.cookies.get(LOGIN_COOKIE), "login")
    if not isinstance(given, str) or not bound or not parts.tokens.signed(purpose, bound, given):
        raise FormRefused(
            "this form did not come from this page or is too old: reload the page and send it again"
        )


def acting(role: str) -> list[Any]:
    """The dependencies of a form action: signed in, ``role`` or higher, a valid CSRF token
    (checked in that order, each refusing before anything runs)."""
    return [require(role), Depends(checked_form)]


def new_login_nonce(request: Request, response: Response) -> None:
    """Give the sign-in page a fresh nonce cookie (its forms' CSRF binding)."""
    nonce = secrets.token_urlsafe(24)
    request.state.login_nonce = nonce
    response.set_cookie(
        LOGIN_COOKIE,
        nonce,
        max_age=LOGIN_NONCE_SECONDS,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/",
    )


def start_session(request: Request, response: Response, token: str) -> None:
    """Set the session cookie (and drop the sign-in nonce)."""
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=int(SESSION_LIFETIME.total_seconds()),
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/",
    )
    response.delete_cookie(LOGIN_COOKIE, path="/")


def end_session(response: Response) -> None:
    """Remove the session cookie."""
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
