"""The service's catalog rows (users, tokens, jobs, audit, idempotency, login failures).

Typed records and the small queries the service's domain modules need, kept apart from
:class:`~pgvault.catalog.Catalog` so that class stays about backups. Times are aware UTC
datetimes; secrets are only ever stored as hashes (argon2 for passwords, sha256 hex for
high-entropy tokens).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, Literal

import sqlalchemy as sa
from pydantic import BaseModel, Field
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from pgvault.catalog import Catalog
from pgvault.catalog.records import BackupRecord
from pgvault.catalog.tables import (
    api_tokens,
    audit_events,
    backups,
    idempotency_keys,
    jobs,
    login_failures,
    refresh_tokens,
    users,
)
from pgvault.errors import CatalogError

Role = Literal["viewer", "operator", "admin", "owner"]
JobKind = Literal[
    "backup",
    "restore",
    "verify",
    "upload-restore",
    "dump",
    "files-snapshot",
    "files-restore",
    "files-verify",
]
JobStatus = Literal["queued", "running", "completed", "failed", "cancelled", "interrupted"]


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


class JobRecord(BaseModel):
    """A background backup, restore or verification, with its last known progress."""

    id: str
    kind: JobKind
    status: JobStatus = "queued"
    database: str | None = None
    backup_id: str | None = None
    restore_id: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    phase: str | None = None
    bytes_done: int = Field(default=0, description="Bytes written (backup) so far.")
    rate: float | None = Field(default=None, description="Bytes per second, recent.")
    result: dict[str, Any] | None = None
    error: str | None = None
    error_kind: str | None = Field(default=None, description="PgvaultError class name.")
    created_by: str | None = None
    runner: str | None = None
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None


class AuditEvent(BaseModel):
    """Who did what to which target from where, with which result, when (UTC)."""

    id: int | None = None
    at: datetime
    actor: str | None = None
    action: str
    target: str | None = None
    source_address: str | None = None
    result: Literal["ok", "denied", "failed"]
    status_code: int | None = None
    detail: str | None = None


class LoginFailures(BaseModel):
    """Failed logins counted under one key (``user:NAME`` or ``addr:IP``)."""

    key: str
    failures: int
    last_failure_at: datetime
    locked_until: datetime | None = None


def _utc(value: datetime | None) -> datetime | None:
    """``value`` in UTC; times beyond the calendar's ends (year 1 at +14:00) are clamped."""
    if value is None:
        return None
    try:
        return value.astimezone(UTC)
    except OverflowError:
        return (datetime.min if value.year == 1 else datetime.max).replace(tzinfo=UTC)


@contextmanager
def _tx(catalog: Catalog) -> Iterator[Connection]:
    try:
        with catalog.engine.begin() as conn:
            yield conn
    except IntegrityError:
        raise
    except SQLAlchemyError as exc:
        raise CatalogError(f"catalog query failed: {exc.__cause__ or exc}") from exc


def _upsert(catalog: Catalog, table: sa.Table, key: dict[str, Any], row: dict[str, Any]) -> None:
    where = sa.and_(*(table.c[name] == value for name, value in key.items()))
    with _tx(catalog) as conn:
        if conn.execute(table.update().where(where).values(**row)).rowcount == 0:
            conn.execute(table.insert().values(**row))


def _rows(catalog: Catalog, query: sa.Select[Any]) -> list[dict[str, Any]]:
    with _tx(catalog) as conn:
        return [dict(row._mapping) for row in conn.execute(query).all()]


def _update(catalog: Catalog, table: sa.Table, where: Any, values: dict[str, Any]) -> int:
    with _tx(catalog) as conn:
        return int(conn.execute(table.update().where(where).values(**values)).rowcount)


# --- users ---------------------------------------------------------------------------------


def add_user(catalog: Catalog, user: UserRecord) -> bool:
    """Insert a user; False when the name is taken."""
    try:
        with _tx(catalog) as conn:
            conn.execute(users.insert().values(**user.model_dump()))
    except IntegrityError:
        return False
    return True


def add_first_user(catalog: Catalog, user: UserRecord) -> bool:
    """Insert ``user`` only if no user exists yet (``POST /setup``); False otherwise."""
    with _tx(catalog) as conn:
        if conn.execute(sa.select(sa.func.count()).select_from(users)).scalar():
            return False
        conn.execute(users.insert().values(**user.model_dump()))
    return True


def find_user(
    catalog: Catalog, *, username: str | None = None, user_id: str | None = None
) -> UserRecord | None:
    """The user with that name or id, or None."""
    column, value = (users.c.username, username) if username is not None else (users.c.id, user_id)
    found = _rows(catalog, sa.select(users).where(column == value))
    return UserRecord.model_validate(found[0]) if found else None


def list_users(catalog: Catalog) -> list[UserRecord]:
    """Every user, by name."""
    return [
        UserRecord.model_validate(r)
        for r in _rows(catalog, sa.select(users).order_by(users.c.username))
    ]


def update_user(catalog: Catalog, user_id: str, **values: Any) -> None:
    """Set columns of one user (``updated_at`` is the caller's to set)."""
    _update(catalog, users, users.c.id == user_id, values)


def delete_user(catalog: Catalog, user_id: str) -> None:
    """Remove a user and its refresh tokens."""
    with _tx(catalog) as conn:
        conn.execute(refresh_tokens.delete().where(refresh_tokens.c.user_id == user_id))
        conn.execute(users.delete().where(users.c.id == user_id))


def count_owners(catalog: Catalog) -> int:
    """Enabled users with the owner role."""
    query = (
        sa.select(sa.func.count())
        .select_from(users)
        .where((users.c.role == "owner") & (users.c.disabled == sa.false()))
    )
    with _tx(catalog) as conn:
        return int(conn.execute(query).scalar() or 0)


# --- API tokens -------------------------------------------------------------------------


def add_api_token(catalog: Catalog, token: ApiTokenRecord) -> None:
    """Insert an API token row."""
    with _tx(catalog) as conn:
        conn.execute(api_tokens.insert().values(**token.model_dump()))


def find_api_token(catalog: Catalog, token_hash: str) -> ApiTokenRecord | None:
    """The token whose sha256 is ``token_hash`` (the index does the lookup)."""
    found = _rows(catalog, sa.select(api_tokens).where(api_tokens.c.token_hash == token_hash))
    return ApiTokenRecord.model_validate(found[0]) if found else None


def list_api_tokens(catalog: Catalog) -> list[ApiTokenRecord]:
    """Every API token, newest first."""
    query = sa.select(api_tokens).order_by(api_tokens.c.created_at.desc())
    return [ApiTokenRecord.model_validate(r) for r in _rows(catalog, query)]


def update_api_token(catalog: Catalog, token_id: str, **values: Any) -> int:
    """Set columns of one API token; returns the rows changed (0: unknown id)."""
    return _update(catalog, api_tokens, api_tokens.c.id == token_id, values)


# --- refresh tokens -----------------------------------------------------------------------


def add_refresh_token(catalog: Catalog, token: RefreshTokenRecord) -> None:
    """Insert a refresh token row."""
    with _tx(catalog) as conn:
        conn.execute(refresh_tokens.insert().values(**token.model_dump()))


def find_refresh_token(catalog: Catalog, token_hash: str) -> RefreshTokenRecord | None:
    """The refresh token whose sha256 is ``token_hash``."""
    query = sa.select(refresh_tokens).where(refresh_tokens.c.token_hash == token_hash)
    found = _rows(catalog, query)
    return RefreshTokenRecord.model_validate(found[0]) if found else None


def rotate_refresh_token(
    catalog: Catalog, old_id: str, new: RefreshTokenRecord, now: datetime
) -> bool:
    """Revoke ``old_id`` and insert ``new`` atomically; False if ``old_id`` was already
    revoked (a concurrent or replayed use: the caller then revokes the family)."""
    with _tx(catalog) as conn:
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
    return _update(catalog, refresh_tokens, where, {"revoked_at": now})


# --- jobs --------------------------------------------------------------------------------


def save_job(catalog: Catalog, job: JobRecord) -> None:
    """Insert or replace a job row."""
    _upsert(catalog, jobs, {"id": job.id}, job.model_dump(mode="python"))


def get_job(catalog: Catalog, job_id: str) -> JobRecord | None:
    """The job ``job_id``, or None."""
    found = _rows(catalog, sa.select(jobs).where(jobs.c.id == job_id))
    return JobRecord.model_validate(found[0]) if found else None


def list_jobs(
    catalog: Catalog, *, status: Sequence[str] = (), limit: int = 50, offset: int = 0
) -> list[JobRecord]:
    """Jobs, newest first, optionally only those in ``status``."""
    query = sa.select(jobs).order_by(jobs.c.created_at.desc(), jobs.c.id.desc())
    if status:
        query = query.where(jobs.c.status.in_(list(status)))
    query = query.limit(limit).offset(offset)
    return [JobRecord.model_validate(r) for r in _rows(catalog, query)]


# --- idempotency keys ----------------------------------------------------------------------


def idempotent_job(catalog: Catalog, actor: str, key: str, since: datetime) -> str | None:
    """The job id recorded for ``(actor, key)`` after ``since``, or None."""
    query = sa.select(idempotency_keys.c.job_id, idempotency_keys.c.created_at).where(
        (idempotency_keys.c.actor == actor) & (idempotency_keys.c.key == key)
    )
    found = _rows(catalog, query)
    if not found or found[0]["created_at"] < since:
        return None
    return str(found[0]["job_id"])


def claim_idempotency_key(
    catalog: Catalog, actor: str, key: str, job_id: str, now: datetime, since: datetime
) -> str:
    """Record ``job_id`` for ``(actor, key)``; returns the job id that owns the key (an
    older live one wins; an expired one is replaced)."""
    with _tx(catalog) as conn:
        conn.execute(
            idempotency_keys.delete().where(
                (idempotency_keys.c.actor == actor)
                & (idempotency_keys.c.key == key)
                & (idempotency_keys.c.created_at < since)
            )
        )
    try:
        with _tx(catalog) as conn:
            conn.execute(
                idempotency_keys.insert().values(
                    actor=actor, key=key, job_id=job_id, created_at=now
                )
            )
    except IntegrityError:
        return idempotent_job(catalog, actor, key, since) or job_id
    return job_id


# --- audit -------------------------------------------------------------------------------


def add_audit_event(catalog: Catalog, event: AuditEvent) -> None:
    """Append one audit event."""
    with _tx(catalog) as conn:
        conn.execute(audit_events.insert().values(**event.model_dump(exclude={"id"})))


def list_audit_events(
    catalog: Catalog,
    *,
    actor: str | None = None,
    action: str | None = None,
    result: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[AuditEvent]:
    """Audit events, newest first, filtered; ``action`` matches as a substring."""
    c = audit_events.c
    since, until = _utc(since), _utc(until)
    query = sa.select(audit_events).order_by(c.at.desc(), c.id.desc())
    if actor is not None:
        query = query.where(c.actor == actor)
    if action is not None:
        query = query.where(c.action.contains(action, autoescape=True))
    if result is not None:
        query = query.where(c.result == result)
    if since is not None:
        query = query.where(c.at >= since)
    if until is not None:
        query = query.where(c.at < until)
    query = query.limit(limit).offset(offset)
    return [AuditEvent.model_validate(r) for r in _rows(catalog, query)]


# --- login throttling --------------------------------------------------------------------


def get_login_failures(catalog: Catalog, keys: Sequence[str]) -> list[LoginFailures]:
    """The failure counters of ``keys`` (absent keys have none)."""
    query = sa.select(login_failures).where(login_failures.c.key.in_(list(keys)))
    return [LoginFailures.model_validate(r) for r in _rows(catalog, query)]


def save_login_failures(catalog: Catalog, state: LoginFailures) -> None:
    """Insert or replace one failure counter."""
    _upsert(catalog, login_failures, {"key": state.key}, state.model_dump())


def clear_login_failures(catalog: Catalog, keys: Sequence[str]) -> None:
    """Forget the failures of ``keys`` (after a successful login)."""
    with _tx(catalog) as conn:
        conn.execute(login_failures.delete().where(login_failures.c.key.in_(list(keys))))


# --- backups, as the service filters them ----------------------------------------------


def search_backups(
    catalog: Catalog,
    *,
    database: str | None = None,
    environment: str | None = None,
    status: str | None = None,
    trigger: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 50,
    offset: int = 0,
) -> list[BackupRecord]:
    """Backups newest first; ``deleted`` ones only when asked by ``status``;
    ``since``/``until`` bound ``started_at`` (UTC, until exclusive)."""
    c = backups.c
    since, until = _utc(since), _utc(until)
    query = sa.select(backups).order_by(c.started_at.desc(), c.id.desc())
    for column, value in (
        (c.database, database),
        (c.environment, environment),
        (c.trigger, trigger),
    ):
        if value is not None:
            query = query.where(column == value)
    query = query.where(c.status == status) if status else query.where(c.status != "deleted")
    if since is not None:
        query = query.where(c.started_at >= since)
    if until is not None:
        query = query.where(c.started_at < until)
    query = query.limit(limit).offset(offset)
    return [BackupRecord.model_validate(r) for r in _rows(catalog, query)]
