"""The service's users: roles, argon2 password hashes, login with throttling.

Users live in the pgvault catalog, never in the databases pgvault backs up, so restoring a
database can neither lock anyone out of pgvault nor bring back old credentials.

Roles are ordered; each includes the ones before it::

    viewer    read everything but the audit log and the users
    operator  + create backups, download, verify, cancel jobs
    admin     + restore, delete, retention, read the audit log
    owner     + users and API tokens

Login throttling is per (user name, client address) pair with growing delays
(:mod:`pgvault.throttle`): failures from one client never lock the account for
another client, so nobody can lock the owner out, and many users behind one address are
not locked out together.
"""

from __future__ import annotations

import logging
import re
import secrets
from typing import get_args

from pgvault import runtime, throttle
from pgvault.catalog import Catalog
from pgvault.catalog import accounts as rows
from pgvault.catalog.accounts import Role, UserRecord
from pgvault.config.settings import Settings
from pgvault.errors import (
    AlreadyExists,
    AuthError,
    ConfigError,
    NotFound,
    Refused,
)
from pgvault.passwords import hash_secret, verify_secret

log = logging.getLogger(__name__)

ROLES: tuple[Role, ...] = get_args(Role)
_NAME = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")


def role_allows(have: str, need: str) -> bool:
    """Whether role ``have`` includes role ``need`` (``admin`` allows ``operator``)."""
    return ROLES.index(have) >= ROLES.index(need)


def check_role(role: str) -> Role:
    """``role`` if it is one of :data:`ROLES`.

    Raises:
        ConfigError: unknown role (lists the known ones).
    """
    if role not in ROLES:
        raise ConfigError(f"unknown role {role!r}: use one of {', '.join(ROLES)}")
    return role


def create(
    catalog: Catalog, username: str, password: str, role: str, *, created_by: str | None = None
) -> UserRecord:
    """Create a user.

    Raises:
        ConfigError: bad name, role or password.
        AlreadyExists: the name is taken.
    """
    user = _new_user(username, password, role, created_by)
    if not rows.add_user(catalog, user):
        raise AlreadyExists(f"user {username!r} exists already: choose another name")
    log.info("user %s created with role %s", username, role)
    return user


def setup(catalog: Catalog, username: str, password: str) -> UserRecord:
    """Create the first user, as ``owner``; only while no user exists.

    Raises:
        AlreadyExists: a user exists already (log in and use ``/users`` instead).
    """
    user = _new_user(username, password, "owner", "setup")
    if not rows.add_first_user(catalog, user):
        raise AlreadyExists("setup is done already: log in as an owner to add users")
    return user


def _new_user(username: str, password: str, role: str, created_by: str | None) -> UserRecord:
    if not _NAME.match(username):
        raise ConfigError(
            f"user name {username!r} is not allowed: 1-64 letters, digits and . _ @ -"
        )
    now = runtime.now()
    return UserRecord(
        id=secrets.token_hex(8),
        username=username,
        password_hash=hash_secret(password),
        role=check_role(role),
        created_at=now,
        updated_at=now,
        created_by=created_by,
    )


def get(catalog: Catalog, username: str) -> UserRecord:
    """The user ``username``.

    Raises:
        NotFound: no such user.
    """
    user = rows.find_user(catalog, username=username)
    if user is None:
        raise NotFound(f"no user named {username!r}: GET /api/v1/users lists them")
    return user


def list_all(catalog: Catalog) -> list[UserRecord]:
    """Every user, by name."""
    return rows.list_users(catalog)


def update(
    catalog: Catalog,
    username: str,
    *,
    role: str | None = None,
    disabled: bool | None = None,
    password: str | None = None,
) -> UserRecord:
    """Change a user's role, enabled state or password. Disabling and a new password revoke
    every session of the user (refresh tokens, and access tokens through ``token_version``).

    Raises:
        NotFound: no such user.
        ConfigError: bad role or password.
        Refused: the change would leave no enabled owner.
    """
    user = get(catalog, username)
    values: dict[str, object] = {}
    if role is not None:
        values["role"] = check_role(role)
    if password is not None:
        values["password_hash"] = hash_secret(password)
    if disabled is not None:
        values["disabled"] = disabled
    losing_owner = user.role == "owner" and (
        (role is not None and role != "owner") or disabled is True
    )
    if losing_owner and not user.disabled and rows.count_owners(catalog) <= 1:
        raise Refused(f"{username!r} is the last owner: make another user owner first")
    if password is not None or disabled:
        values["token_version"] = user.token_version + 1
        rows.revoke_refresh_tokens(catalog, runtime.now(), user_id=user.id)
    if values:
        values["updated_at"] = runtime.now()
        rows.update_user(catalog, user.id, **values)
    return get(catalog, username)


def change_own_password(catalog: Catalog, user_id: str, current: str, new: str) -> None:
    """A user changes their own password; every session of theirs is revoked.

    Raises:
        AuthError: ``current`` is wrong.
        ConfigError: ``new`` is too short or too long.
    """
    user = rows.find_user(catalog, user_id=user_id)
    if user is None or not verify_secret(current, user.password_hash):
        raise AuthError("the current password is wrong")
    update(catalog, user.username, password=new)


def delete(catalog: Catalog, username: str) -> None:
    """Remove a user and their sessions.

    Raises:
        NotFound: no such user.
        Refused: the last enabled owner.
    """
    user = get(catalog, username)
    if user.role == "owner" and not user.disabled and rows.count_owners(catalog) <= 1:
        raise Refused(f"{username!r} is the last owner: make another user owner first")
    rows.delete_user(catalog, user.id)


def authenticate(
    settings: Settings, catalog: Catalog, username: str, password: str, address: str | None
) -> UserRecord:
    """Check a login; throttled per (user name, client address) pair (see the module doc).

    Raises:
        Throttled: too many recent failures of this pair (retry later; 429).
        AuthError: unknown user, wrong password or disabled user (one message for all).
    """
    key = throttle.pair_key("login", username, address)
    throttle.check(catalog, key, "failed logins")
    user = rows.find_user(catalog, username=username)
    ok = verify_secret(password, user.password_hash if user else None)
    if ok and user is not None and not user.disabled:
        throttle.succeeded(catalog, key)
        return user
    shown = f"logins of user {username}" if user is not None else "logins of an unknown user"
    throttle.failed(settings, catalog, key, shown)
    raise AuthError("wrong user name or password (or the user is disabled)")


def audit_name(catalog: Catalog, username: str) -> str:
    """How the audit log names who tried to log in: the user name if such a user exists,
    else ``unknown`` (a password typed into the user name field must not be recorded)."""
    return username if rows.find_user(catalog, username=username) is not None else "unknown"
