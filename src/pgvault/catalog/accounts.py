"""The service's accounts in the catalog: users, API tokens, refresh tokens, login failures.

Typed records and their queries, for :mod:`pgvault.service.users` and
:mod:`pgvault.service.tokens`. Times are aware UTC datetimes; secrets are only ever stored
as hashes (argon2 for passwords, sha256 hex for high-entropy tokens).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

import sqlalchemy as sa
from pydantic import BaseModel, Field
from sqlalchemy.exc import IntegrityError

from pgvault.catalog.engine import select_rows, transaction, update_rows, upsert
from pgvault.catalog.tables import api_tokens, login_failures, refresh_tokens, users

if TYPE_CHECKING:
    from pgvault.catalog import Catalog

Role = Literal["viewer", "operator", "admin", "owner"]


class UserRecord(BaseModel):
    """A person who logs in to the service (never a role of a backed-up database)."""

    id: str
    username: str
    password_hash: str = Field(repr=False)
    role: Role
    disabled: bool = False
    token_version: int = Field(
        default=0, description="Bumped on logout-all and password change: older JWTs die."
    )
    created_at: datetime
    updated_at: datetime
    created_by: str | None = None


class ApiTokenRecord(BaseModel):
    """A long-lived token for scripts and CI; only its sha256 is stored."""

    id: str
    name: str
    token_hash: str = Field(repr=False)
    role: Role
    created_by: str | None = None
    created_at: datetime
    expires_at: datetime | None = None
    last_used_at: datetime | None = None
    revoked_at: datetime | None = None


class RefreshTokenRecord(BaseModel):
    """One refresh token of a rotation family; only its sha256 is stored."""

    id: str
    user_id: str
    family_id: str
    token_hash: str = Field(repr=False)
    created_at: datetime
    expires_at: datetime
    revoked_at: datetime | None = None
    replaced_by: str | None = None


class LoginFailures(BaseModel):
    """Failed logins counted under one key (``user:NAME`` or ``addr:IP``)."""

    key: str
    failures: int
    last_failure_at: datetime
    locked_until: datetime | None = None


# --- users ---------------------------------------------------------------------------------


def add_user(catalog: Catalog, user: UserRecord) -> bool:
    """Insert a user; False when the name is taken."""
    try:
        with transaction(catalog, conflicts=True) as conn:
            conn.execute(users.insert().values(**user.model_dump()))
    except IntegrityError:
        return False
    return True


def add_first_user(catalog: Catalog, user: UserRecord) -> bool:
    """Insert ``user`` only if no user exists yet (``POST /setup``); False otherwise."""
    with transaction(catalog) as conn:
        if conn.execute(sa.select(sa.func.count()).select_from(users)).scalar():
            return False
        conn.execute(users.insert().values(**user.model_dump()))
    return True


def find_user(
    catalog: Catalog, *, username: str | None = None, user_id: str | None = None
) -> UserRecord | None:
    """The user with that name or id, or None."""
    column, value = (users.c.username, username) if username is not None else (users.c.id, user_id)
    found = select_rows(catalog, sa.select(users).where(column == value))
    return UserRecord.model_validate(found[0]) if found else None


def list_users(catalog: Catalog) -> list[UserRecord]:
    """Every user, by name."""
    return [
        UserRecord.model_validate(r)
        for r in select_rows(catalog, sa.select(users).order_by(users.c.username))
    ]


def update_user(catalog: Catalog, user_id: str, **values: Any) -> None:
    """Set columns of one user (``updated_at`` is the caller's to set)."""
    update_rows(catalog, users, users.c.id == user_id, values)


def delete_user(catalog: Catalog, user_id: str) -> None:
    """Remove a user and its refresh tokens."""
    with transaction(catalog) as conn:
        conn.execute(refresh_tokens.delete().where(refresh_tokens.c.user_id == user_id))
        conn.execute(users.delete().where(users.c.id == user_id))


def count_owners(catalog: Catalog) -> int:
    """Enabled users with the owner role."""
    query = (
        sa.select(sa.func.count())
        .select_from(users)
        .where((users.c.role == "owner") & (users.c.disabled == sa.false()))
    )
    with transaction(catalog) as conn:
        return int(conn.execute(query).scalar() or 0)


# --- API tokens -------------------------------------------------------------------------


def add_api_token(catalog: Catalog, token: ApiTokenRecord) -> None:
    """Insert an API token row."""
    with transaction(catalog) as conn:
        conn.execute(api_tokens.insert().values(**token.model_dump()))


def find_api_token(catalog: Catalog, token_hash: str) -> ApiTokenRecord | None:
    """The token whose sha256 is ``token_hash`` (the index does the lookup)."""
    found = select_rows(catalog, sa.select(api_tokens).where(api_tokens.c.token_hash == token_hash))
    return ApiTokenRecord.model_validate(found[0]) if found else None


def list_api_tokens(catalog: Catalog) -> list[ApiTokenRecord]:
    """Every API token, newest first."""
    query = sa.select(api_tokens).order_by(api_tokens.c.created_at.desc())
    return [ApiTokenRecord.model_validate(r) for r in select_rows(catalog, query)]


def update_api_token(catalog: Catalog, token_id: str, **values: Any) -> int:
    """Set columns of one API token; returns the rows changed (0: unknown id)."""
    return update_rows(catalog, api_tokens, api_tokens.c.id == token_id, values)


# --- refresh tokens -----------------------------------------------------------------------


def add_refresh_token(catalog: Catalog, token: RefreshTokenRecord) -> None:
    """Insert a refresh token row."""
    with transaction(catalog) as conn:
        conn.execute(refresh_tokens.insert().values(**token.model_dump()))


def find_refresh_token(catalog: Catalog, token_hash: str) -> RefreshTokenRecord | None:
    """The refresh token whose sha256 is ``token_hash``."""
    query = sa.select(refresh_tokens).where(refresh_tokens.c.token_hash == token_hash)
    found = select_rows(catalog, query)
    return RefreshTokenRecord.model_validate(found[0]) if found else None


def rotate_refresh_token(
    catalog: Catalog, old_id: str, new: RefreshTokenRecord, now: datetime
) -> bool:
    """Revoke ``old_id`` and insert ``new`` atomically; False if ``old_id`` was already
    revoked (a concurrent or replayed use: the caller then revokes the family)."""
    with transaction(catalog) as conn:
        done = conn.execute(
            refresh_tokens.update()
            .where((refresh_tokens.c.id == old_id) & refresh_tokens.c.revoked_at.is_(None))
            .values(revoked_at=now, replaced_by=new.id)
        )
        if done.rowcount != 1:
            return False
        conn.execute(refresh_tokens.insert().values(**new.model_dump()))
    return True


def revoke_refresh_tokens(
    catalog: Catalog, now: datetime, *, family_id: str | None = None, user_id: str | None = None
) -> int:
    """Revoke every live refresh token of a family or of a user; returns how many."""
    column, value = (
        (refresh_tokens.c.family_id, family_id)
        if family_id is not None
        else (refresh_tokens.c.user_id, user_id)
    )
    where = (column == value) & refresh_tokens.c.revoked_at.is_(None)
    return update_rows(catalog, refresh_tokens, where, {"revoked_at": now})


# --- login throttling --------------------------------------------------------------------


def get_login_failures(catalog: Catalog, keys: Sequence[str]) -> list[LoginFailures]:
    """The failure counters of ``keys`` (absent keys have none)."""
    query = sa.select(login_failures).where(login_failures.c.key.in_(list(keys)))
    return [LoginFailures.model_validate(r) for r in select_rows(catalog, query)]


def save_login_failures(catalog: Catalog, state: LoginFailures) -> None:
    """Insert or replace one failure counter."""
    upsert(catalog, login_failures, {"key": state.key}, state.model_dump())


def clear_login_failures(catalog: Catalog, keys: Sequence[str]) -> None:
    """Forget the failures of ``keys`` (after a successful login)."""
    with transaction(catalog) as conn:
        conn.execute(login_failures.delete().where(login_failures.c.key.in_(list(keys))))
