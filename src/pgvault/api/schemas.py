"""Request and response bodies of the API (JSON). Sizes are bytes, durations seconds,
times ISO-8601 UTC."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from pgvault.catalog.accounts import ApiTokenRecord, Role, UserRecord
from pgvault.catalog.audit import AuditEvent
from pgvault.catalog.jobs import JobRecord
from pgvault.catalog.records import BackupRecord, BackupStatus, RestoreRecord, Trigger
from pgvault.operations.monitoring import DatabaseSummary

Name = Field(min_length=1, max_length=255)


class ErrorBody(BaseModel):
    """Every error answer."""

    error: str = Field(description="Short title, e.g. 'not found'.")
    detail: str = Field(description="What happened and what to do.")


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- auth ------------------------------------------------------------------------------


class LoginIn(_In):
    username: str = Field(min_length=1, max_length=255)
    password: str = Field(min_length=1, max_length=1024)


class SetupIn(LoginIn):
    """The first owner (``POST /setup``, only while no user exists)."""


class TokenPairOut(BaseModel):
    access_token: str
    refresh_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105 - OAuth 2 token type
    expires_in: int = Field(description="Seconds the access token is valid.")


class RefreshIn(_In):
    refresh_token: str = Field(min_length=1, max_length=512)


class LogoutIn(_In):
    refresh_token: str | None = Field(
        default=None, max_length=512, description="Ends this session; without it, all of them."
    )


class PasswordIn(_In):
    current_password: str = Field(min_length=1, max_length=1024)
    new_password: str = Field(min_length=8, max_length=1024)


class MeOut(BaseModel):
    kind: Literal["user", "token"]
    name: str
    role: Role


# --- users and tokens -------------------------------------------------------------------


class UserOut(BaseModel):
    id: str
    username: str
    role: Role
    disabled: bool
    created_at: datetime
    updated_at: datetime
    created_by: str | None = None

    @classmethod
    def of(cls, user: UserRecord) -> UserOut:
        return cls.model_validate(user.model_dump(exclude={"password_hash", "token_version"}))


class UserIn(_In):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=8, max_length=1024)
    role: Role


class UserPatchIn(_In):
    role: Role | None = None
    disabled: bool | None = None
    password: str | None = Field(default=None, min_length=8, max_length=1024)


class TokenIn(_In):
    name: str = Name
    role: Role
    expires_days: int | None = Field(default=None, ge=1, le=3650)


class TokenOut(BaseModel):
    id: str
    name: str
    role: Role
    created_by: str | None = None
    created_at: datetime
    expires_at: datetime | None = None
    last_used_at: datetime | None = None
    revoked_at: datetime | None = None

    @classmethod
    def of(cls, record: ApiTokenRecord) -> TokenOut:
        return cls.model_validate(record.model_dump(exclude={"token_hash"}))


class TokenCreatedOut(TokenOut):
    token: str = Field(description="The token itself: shown only this once.")


# --- backups ---------------------------------------------------------------------------


class BackupIn(_In):
    database: str = Field(min_length=1, max_length=255, description="Name from the config.")
    tables: list[str] = Field(default_factory=list, max_length=1000)
    exclude_tables: list[str] = Field(default_factory=list, max_length=1000)
    format: Literal["custom", "plain", "directory"] | None = None
    compression: Literal["zstd", "gzip", "none"] | None = None
    storage: str | None = Field(
        default=None,
        max_length=255,
        description="A configured storage target's name (never a path or URL).",
    )
    labels: dict[
        Annotated[str, StringConstraints(min_length=1, max_length=64)],
        Annotated[str, StringConstraints(max_length=256)],
    ] = Field(default_factory=dict, max_length=64, description="Keys 1-64, values <= 256.")


class BackupOut(BackupRecord):
    """A backup, as the catalog knows it, with the file name it downloads as."""

    file_name: str

    @classmethod
    def of(cls, record: BackupRecord) -> BackupOut:
        return cls.model_validate(
            {**record.model_dump(), "file_name": record.storage_key.rsplit("/", 1)[-1]}
        )


class DayGroup(BaseModel):
    day: str = Field(description="YYYY-MM-DD (UTC).")
    count: int
    completed: int
    failed: int
    total_bytes: int


class BackupsOut(BaseModel):
    items: list[BackupOut]
    limit: int
    offset: int
    next_cursor: str | None = Field(
        default=None,
        description="Pass as cursor for the next page (keyset: stable while backups are "
        "added); null on the last page.",
    )
    days: list[DayGroup] | None = Field(default=None, description="With group_by=day.")


class DownloadLinkOut(BaseModel):
    url: str = Field(description="Path of the signed download; no token needed.")
    expires_at: datetime


class RestorePreviewIn(_In):
    target: str | None = Field(
        default=None, max_length=255, description="Configured database; default: the backup's."
    )
    mode: Literal["swap", "clean", "recreate"] = "swap"
    safety_backup: bool = Field(default=True, description="Back up the live database first.")


class RestoreIn(RestorePreviewIn):
    confirm: str = Field(max_length=255, description="The target database's name.")
    passkey: str | None = Field(default=None, max_length=1024)


class JobOut(JobRecord):
    """A job; ``bytes_done`` in bytes, ``rate`` in bytes/s."""


class BackupDoneOut(BaseModel):
    """``POST /backups?wait=true``: the job and the finished backup."""

    job: JobOut
    backup: BackupOut


class RestoreOut(RestoreRecord):
    """A restore run."""


# --- the rest ---------------------------------------------------------------------------


class DatabaseOut(BaseModel):
    name: str
    dbname: str
    server: str = Field(description="postgresql://user@host:port/db, no password.")
    environment: str | None
    restore_target: bool = Field(description="Whether this service may restore into it.")
    newest_backup: BackupOut | None = None
    newest_age_seconds: float | None = None
    status: Literal["ok", "warning", "critical"] | None = Field(
        default=None,
        description="ok; warning: newest completed backup stale, shrunk or last run "
        "interrupted; critical: last run failed or no completed backup.",
    )
    reasons: list[str] = Field(default_factory=list, description="Why the status is not ok.")

    @classmethod
    def of(cls, summary: DatabaseSummary) -> DatabaseOut:
        newest = summary.newest_backup
        fields = {**summary.__dict__, "newest_backup": BackupOut.of(newest) if newest else None}
        return cls.model_validate(fields)


class StatsOut(BaseModel):
    database: str
    count: int
    total_bytes: int
    oldest: datetime | None
    newest: datetime | None


class AuditOut(AuditEvent):
    """One audit event."""


class HealthOut(BaseModel):
    status: Literal["ok", "degraded"]
    checks: dict[str, dict[str, Any]]
    databases: list[DatabaseOut] | None = Field(
        default=None, description="Only for authenticated callers."
    )


BackupStatusQ = BackupStatus
TriggerQ = Trigger
