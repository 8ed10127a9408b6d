"""``POST /setup``, ``/auth/login``, ``/auth/refresh``, ``/auth/logout``, ``/auth/password``,
``GET /auth/me``."""

from __future__ import annotations

from fastapi import APIRouter, Request, status

from pgvault.api.deps import Caller, CatalogDep, SettingsDep, TokensDep, client_address
from pgvault.api.routes._common import ERRORS
from pgvault.api.schemas import (
    LoginIn,
    LogoutIn,
    MeOut,
    PasswordIn,
    RefreshIn,
    SetupIn,
    TokenPairOut,
    UserOut,
)
from pgvault.errors import ConfigError
from pgvault.service import users
from pgvault.service.tokens import TokenPair

router = APIRouter(tags=["auth"], responses=ERRORS)


def _out(pair: TokenPair) -> TokenPairOut:
    return TokenPairOut(
        access_token=pair.access_token, refresh_token=pair.refresh_token, expires_in=pair.expires_in
    )


@router.post("/setup", response_model=UserOut, status_code=status.HTTP_201_CREATED)
def setup(body: SetupIn, request: Request, catalog: CatalogDep) -> UserOut:
    """Create the first user, an owner; works only while no user exists (then 409)."""
    request.state.audit_actor = "unknown"
    created = users.setup(catalog, body.username, body.password)
    request.state.audit_actor = created.username
    return UserOut.of(created)


@router.post("/auth/login", response_model=TokenPairOut)
def login(
    body: LoginIn, request: Request, settings: SettingsDep, catalog: CatalogDep, tokens: TokensDep
) -> TokenPairOut:
    """Exchange a user name and password for an access token and a refresh token.
    Repeated failures are slowed, then refused for a while (429)."""
    request.state.audit_actor = users.audit_name(catalog, body.username)
    user = users.authenticate(
        settings, catalog, body.username, body.password, client_address(request)
    )
    return _out(tokens.issue(user))


@router.post("/auth/refresh", response_model=TokenPairOut)
def refresh(body: RefreshIn, tokens: TokensDep) -> TokenPairOut:
    """Rotate a refresh token: it is revoked and a new pair answered. A reused one revokes
    its whole family (401)."""
    return _out(tokens.refresh(body.refresh_token))


@router.post("/auth/logout", status_code=status.HTTP_204_NO_CONTENT)
def logout(body: LogoutIn, caller: Caller, tokens: TokensDep) -> None:
    """End the session of ``refresh_token`` (or every session); access tokens stop working."""
    if caller.kind != "user":
        raise ConfigError("API tokens do not log out: revoke them with DELETE /api/v1/tokens/ID")
    tokens.logout(caller.id, body.refresh_token)


@router.post("/auth/password", status_code=status.HTTP_204_NO_CONTENT)
def change_password(body: PasswordIn, caller: Caller, catalog: CatalogDep) -> None:
    """Change your own password; every session of yours is revoked (log in again)."""
    if caller.kind != "user":
        raise ConfigError("an API token has no password")
    users.change_own_password(catalog, caller.id, body.current_password, body.new_password)


@router.get("/auth/me", response_model=MeOut)
def me(caller: Caller) -> MeOut:
    """Who the credentials belong to, and their role."""
    return MeOut(kind=caller.kind, name=caller.name, role=caller.role)
