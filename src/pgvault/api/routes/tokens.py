"""``/tokens``: API tokens for scripts and CI (owners only); shown once, stored hashed."""

from __future__ import annotations

from fastapi import APIRouter, status

from pgvault.api.deps import Caller, CatalogDep, require_role
from pgvault.api.routes._common import ERRORS
from pgvault.api.schemas import TokenCreatedOut, TokenIn, TokenOut
from pgvault.catalog import accounts as rows
from pgvault.service import tokens

router = APIRouter(tags=["tokens"], responses=ERRORS, dependencies=[require_role("owner")])


@router.post("/tokens", response_model=TokenCreatedOut, status_code=status.HTTP_201_CREATED)
def create_token(body: TokenIn, catalog: CatalogDep, caller: Caller) -> TokenCreatedOut:
    """Create an API token; the answer's ``token`` is the only time it is shown."""
    plain, record = tokens.create_api_token(
        catalog, body.name, body.role, created_by=caller.actor, expires_days=body.expires_days
    )
    return TokenCreatedOut.model_validate({**TokenOut.of(record).model_dump(), "token": plain})


@router.get("/tokens", response_model=list[TokenOut])
def list_tokens(catalog: CatalogDep) -> list[TokenOut]:
    """Every API token (never the token itself)."""
    return [TokenOut.of(t) for t in rows.list_api_tokens(catalog)]


@router.delete("/tokens/{token_id}", status_code=status.HTTP_204_NO_CONTENT)
def revoke_token(token_id: str, catalog: CatalogDep) -> None:
    """Revoke an API token at once."""
    tokens.revoke_api_token(catalog, token_id)
