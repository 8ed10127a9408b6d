"""Dependencies of the route handlers, as ``Annotated`` types.

``SettingsDep``, ``CatalogDep``, ``RunnerDep`` and ``TokensDep`` give the service's parts;
``Caller`` is the authenticated principal (401 without valid credentials);
``require_role(role)`` is a dependency answering 403 to a principal whose role is lower::

    @router.post("/backups", dependencies=[require_role("operator")])
    def start(caller: Caller, runner: RunnerDep) -> ...

The principal is also left in ``request.state.principal`` for the audit middleware.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from pgvault.catalog import Catalog
from pgvault.config.settings import Settings
from pgvault.errors import AuthError, PermissionDenied
from pgvault.service.jobs import JobRunner
from pgvault.service.tokens import Principal, Tokens
from pgvault.service.users import role_allows


@dataclass(frozen=True)
class Service:
    """The parts one app instance shares between requests (``app.state.service``)."""

    settings: Settings
    catalog: Catalog
    runner: JobRunner
    tokens: Tokens
    dev: bool = False


def get_service(request: Request) -> Service:
    """The app's :class:`Service`."""
    service = request.app.state.service
    assert isinstance(service, Service)
    return service


def get_settings(request: Request) -> Settings:
    """The service's settings."""
    return get_service(request).settings


def get_catalog(request: Request) -> Catalog:
    """The service's catalog."""
    return get_service(request).catalog


def get_runner(request: Request) -> JobRunner:
    """The service's job runner."""
    return get_service(request).runner


def get_tokens(request: Request) -> Tokens:
    """The service's token issuer and checker."""
    return get_service(request).tokens


ServiceDep = Annotated[Service, Depends(get_service)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
CatalogDep = Annotated[Catalog, Depends(get_catalog)]
RunnerDep = Annotated[JobRunner, Depends(get_runner)]
TokensDep = Annotated[Tokens, Depends(get_tokens)]

_bearer = HTTPBearer(auto_error=False, description="An access token (JWT) or an API token.")
BearerDep = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


def client_address(request: Request) -> str | None:
    """The peer's address (no proxy headers are trusted)."""
    return request.client.host if request.client else None


def optional_principal(request: Request, tokens: TokensDep, bearer: BearerDep) -> Principal | None:
    """The caller if credentials were given (bad ones: 401), else None."""
    if bearer is None:
        return None
    principal = tokens.principal(bearer.credentials)
    request.state.principal = principal
    return principal


def current_principal(
    principal: Annotated[Principal | None, Depends(optional_principal)],
) -> Principal:
    """The authenticated caller.

    Raises:
        AuthError: no credentials (401).
    """
    if principal is None:
        raise AuthError("authentication required: send 'Authorization: Bearer <token>'")
    return principal


Caller = Annotated[Principal, Depends(current_principal)]
MaybeCaller = Annotated[Principal | None, Depends(optional_principal)]


def require_role(role: str) -> Any:
    """A dependency that lets only principals of ``role`` or higher through.

    Raises (when resolved):
        AuthError: no or bad credentials (401).
        PermissionDenied: the role is too low (403).
    """

    def check(caller: Caller) -> Principal:
        if not role_allows(caller.role, role):
            raise PermissionDenied(
                f"this needs the {role} role; {caller.actor} has {caller.role}: ask an owner"
            )
        return caller

    return Depends(check)
