"""``/users``: owners manage the service's users."""

from __future__ import annotations

from fastapi import APIRouter, status

from pgvault.api.deps import Caller, CatalogDep, require_role
from pgvault.api.routes._common import ERRORS
from pgvault.api.schemas import UserIn, UserOut, UserPatchIn
from pgvault.service import users

router = APIRouter(tags=["users"], responses=ERRORS, dependencies=[require_role("owner")])


@router.get("/users", response_model=list[UserOut])
def list_users(catalog: CatalogDep) -> list[UserOut]:
    """Every user (no password hashes)."""
    return [UserOut.of(u) for u in users.list_all(catalog)]


@router.post("/users", response_model=UserOut, status_code=status.HTTP_201_CREATED)
def create_user(body: UserIn, catalog: CatalogDep, caller: Caller) -> UserOut:
    """Create a user (409 if the name is taken)."""
    user = users.create(catalog, body.username, body.password, body.role, created_by=caller.actor)
    return UserOut.of(user)


@router.get("/users/{username}", response_model=UserOut)
def get_user(username: str, catalog: CatalogDep) -> UserOut:
    """One user."""
    return UserOut.of(users.get(catalog, username))


@router.patch("/users/{username}", response_model=UserOut)
def update_user(username: str, body: UserPatchIn, catalog: CatalogDep) -> UserOut:
    """Change role, disabled state or password (the last two end the user's sessions)."""
    changed = users.update(
        catalog, username, role=body.role, disabled=body.disabled, password=body.password
    )
    return UserOut.of(changed)


@router.delete("/users/{username}", status_code=status.HTTP_204_NO_CONTENT)
def delete_user(username: str, catalog: CatalogDep) -> None:
    """Remove a user (never the last owner: 403)."""
    users.delete(catalog, username)
