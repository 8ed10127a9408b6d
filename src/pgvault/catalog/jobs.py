"""Background jobs in the catalog (``jobs``) and the idempotency keys that map a client's
retried request to the job it started (``idempotency_keys``), for :mod:`pgvault.service.jobs`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

import sqlalchemy as sa
from pydantic import BaseModel, Field
from sqlalchemy.exc import IntegrityError

from pgvault.catalog.engine import select_rows, transaction, upsert
from pgvault.catalog.tables import idempotency_keys, jobs

if TYPE_CHECKING:
    from pgvault.catalog import Catalog

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


class JobProgress(BaseModel):
    """A running job's numbers (kept live in the process running it, not in the catalog)."""

    phase: str
    unit: str = Field(description="bytes, entries (a restore's TOC entries) or steps.")
    done: int = 0
    total: int | None = Field(default=None, description="Estimated for backups.")
    percent: float | None = None
    rate: float | None = Field(default=None, description="Units per second, recent.")
    eta_seconds: float | None = None
    detail: str | None = Field(default=None, description="The current step, in words.")


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
    progress: JobProgress | None = Field(
        default=None, description="Percent, total, time left (while it runs, live only)."
    )
    result: dict[str, Any] | None = None
    error: str | None = None
    error_kind: str | None = Field(default=None, description="PgvaultError class name.")
    created_by: str | None = None
    runner: str | None = None
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None


# --- jobs --------------------------------------------------------------------------------


def save_job(catalog: Catalog, job: JobRecord) -> None:
    """Insert or replace a job row."""
    upsert(catalog, jobs, {"id": job.id}, job.model_dump(mode="python", exclude={"progress"}))


def get_job(catalog: Catalog, job_id: str) -> JobRecord | None:
    """The job ``job_id``, or None."""
    found = select_rows(catalog, sa.select(jobs).where(jobs.c.id == job_id))
    return JobRecord.model_validate(found[0]) if found else None


def list_jobs(
    catalog: Catalog, *, status: Sequence[str] = (), limit: int = 50, offset: int = 0
) -> list[JobRecord]:
    """Jobs, newest first, optionally only those in ``status``."""
    query = sa.select(jobs).order_by(jobs.c.created_at.desc(), jobs.c.id.desc())
    if status:
        query = query.where(jobs.c.status.in_(list(status)))
    query = query.limit(limit).offset(offset)
    return [JobRecord.model_validate(r) for r in select_rows(catalog, query)]


# --- idempotency keys ----------------------------------------------------------------------


def idempotent_job(catalog: Catalog, actor: str, key: str, since: datetime) -> str | None:
    """The job id recorded for ``(actor, key)`` after ``since``, or None."""
    query = sa.select(idempotency_keys.c.job_id, idempotency_keys.c.created_at).where(
        (idempotency_keys.c.actor == actor) & (idempotency_keys.c.key == key)
    )
    found = select_rows(catalog, query)
    if not found or found[0]["created_at"] < since:
        return None
    return str(found[0]["job_id"])


def claim_idempotency_key(
    catalog: Catalog, actor: str, key: str, job_id: str, now: datetime, since: datetime
) -> str:
    """Record ``job_id`` for ``(actor, key)``; returns the job id that owns the key (an
    older live one wins; an expired one is replaced)."""
    with transaction(catalog) as conn:
        conn.execute(
            idempotency_keys.delete().where(
                (idempotency_keys.c.actor == actor)
                & (idempotency_keys.c.key == key)
                & (idempotency_keys.c.created_at < since)
            )
        )
    try:
        with transaction(catalog, conflicts=True) as conn:
            conn.execute(
                idempotency_keys.insert().values(
                    actor=actor, key=key, job_id=job_id, created_at=now
                )
            )
    except IntegrityError:
        return idempotent_job(catalog, actor, key, since) or job_id
    return job_id
