"""Point-in-time recovery over HTTP: the WAL archive's state, the recoverable window (the
web UI's time picker), base backups (as jobs), restore points, and the restore of one
database to a point in time into a configured database (an admin job, behind the same
restore policies as every restore).

No request names a place on disk: recovery into a new data directory (``--into``) is a
CLI-only operation.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Query, Response, status
from pydantic import BaseModel, ConfigDict, Field

from pgvault import databases, restores
from pgvault.api.deps import Caller, CatalogDep, RunnerDep, SettingsDep, require_role
from pgvault.api.routes._common import ERRORS
from pgvault.api.schemas import JobOut
from pgvault.catalog import physical as rows
from pgvault.catalog.physical import PhysicalBackupRecord, RestorePointRecord
from pgvault.config.settings import Settings
from pgvault.dumps.encryption import decryptor_from
from pgvault.physical import basebackup, intodb, recovery, walops
from pgvault.physical import status as wal_status
from pgvault.physical.receiver import require_pitr
from pgvault.restores import policy
from pgvault.service import jobs
from pgvault.service.jobs import JobContext

router = APIRouter(tags=["point-in-time recovery"], responses=ERRORS)


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PhysicalBackupIn(_In):
    incremental: bool = Field(default=False, description="Against the previous one (17+).")


class RestorePointIn(_In):
    name: str = Field(min_length=1, max_length=63, description="The restore point's name.")


class PitrRestoreIn(_In):
    target: str | None = Field(
        default=None, max_length=255, description="Configured database to restore into."
    )
    target_time: datetime | None = Field(default=None, description="With a time zone.")
    target_lsn: str | None = Field(default=None, max_length=32)
    target_name: str | None = Field(default=None, max_length=63)
    latest: bool = False
    confirm: str = Field(max_length=255, description="The target database's name.")
    passkey: str | None = Field(default=None, max_length=1024)
    safety_backup: bool = Field(default=True, description="Back up the live database first.")


def _pitr(settings: Settings, name: str) -> databases.DatabaseTarget:
    target = databases.from_config(settings, name)
    require_pitr(target)
    return target


@router.get(
    "/databases/{name}/wal",
    response_model=wal_status.WalStatus,
    dependencies=[require_role("viewer")],
)
def get_wal_status(
    name: str,
    settings: SettingsDep,
    catalog: CatalogDep,
    live: bool = Query(False, description="Also ask the server (slot, lag) right now."),
) -> wal_status.WalStatus:
    """The WAL archive of a ``pitr = true`` database: streaming, last segment, lag, slot."""
    found = wal_status.wal_status(settings, catalog, _pitr(settings, name), ask_server=live)
    return found


@router.get(
    "/databases/{name}/recoverable-window",
    response_model=wal_status.RecoverableWindow,
    dependencies=[require_role("viewer")],
)
def get_window(
    name: str, settings: SettingsDep, catalog: CatalogDep
) -> wal_status.RecoverableWindow:
    """From the end of the oldest base backup to the end of the unbroken archive."""
    _pitr(settings, name)
    return wal_status.recoverable_window(catalog, name)


@router.get(
    "/physical-backups",
    response_model=list[PhysicalBackupRecord],
    dependencies=[require_role("viewer")],
)
def list_physical(
    catalog: CatalogDep,
    database: str | None = Query(None, max_length=255),
    limit: int = Query(100, ge=1, le=1000),
) -> list[PhysicalBackupRecord]:
    """Base backups, newest first."""
    return rows.list_backups(catalog, database=database)[:limit]


@router.post(
    "/databases/{name}/physical-backups",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=JobOut,
    dependencies=[require_role("operator")],
)
def start_physical(
    name: str,
    body: PhysicalBackupIn,
    response: Response,
    settings: SettingsDep,
    runner: RunnerDep,
    caller: Caller,
) -> JobOut:
    """Take a base backup as a job (``pg_basebackup`` into the database's WAL storage)."""
    target = _pitr(settings, name)
    request = basebackup.PhysicalBackupRequest(
        target=target, incremental=body.incremental, created_by=caller.actor
    )

    def work(context: JobContext) -> dict[str, Any]:
        record = basebackup.create(
            runner.settings, runner.catalog, request, progress=context.progress
        )
        return {"physical_backup": record.model_dump(mode="json")}

    job = runner.submit(
        "backup",
        work,
        database=target.name,
        conn=target.conn,
        params={**jobs.target_params(target), "physical": True, "incremental": body.incremental},
        created_by=caller.actor,
    )
    response.headers["Location"] = f"/api/v1/jobs/{job.id}"
    return JobOut.model_validate(job.model_dump())


@router.post(
    "/databases/{name}/restore-points",
    status_code=status.HTTP_201_CREATED,
    response_model=RestorePointRecord,
    dependencies=[require_role("operator")],
)
def mark(
    name: str, body: RestorePointIn, settings: SettingsDep, catalog: CatalogDep, caller: Caller
) -> RestorePointRecord:
    """Create a named restore point (``pg_create_restore_point``) and record it."""
    return walops.mark(catalog, _pitr(settings, name), body.name, created_by=caller.actor)


@router.post(
    "/databases/{name}/pitr-restore",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=JobOut,
    dependencies=[require_role("admin")],
)
def pitr_restore(
    name: str,
    body: PitrRestoreIn,
    response: Response,
    settings: SettingsDep,
    catalog: CatalogDep,
    runner: RunnerDep,
    caller: Caller,
) -> JobOut:
    """Restore database ``name`` as it was at a point in time into ``target`` (default:
    itself) as a job: a private recovery, then the safe swap restore. Refused (403) by the
    target's restore policies; 409 while a backup or restore of it runs."""
    source = _pitr(settings, name)
    destination = databases.from_config(settings, body.target or name)
    when = recovery.parse_target(
        None if body.target_time is None else body.target_time.isoformat(),
        body.target_lsn,
        body.target_name,
        body.latest,
    )
    swap = restores.RestoreRequest(
        target=destination,
        confirm=body.confirm,
        passkey=body.passkey,
        safety_backup=body.safety_backup,
        created_by=caller.actor,
    )
    policy.check(
        settings,
        catalog,
        destination,
        confirm=swap.confirm,
        passkey=swap.passkey,
        safety_backup=swap.safety_backup,
    )
    decrypt = decryptor_from(settings.age_identity_file)

    def work(context: JobContext) -> dict[str, Any]:
        done = intodb.run(
            runner.settings,
            runner.catalog,
            source,
            when,
            swap,
            decrypt=decrypt,
            progress=context.step,
        )
        context.job.restore_id = done.restore.id
        return {
            "restore": done.restore.model_dump(mode="json"),
            "reached_time": None
            if done.recovered.reached_time is None
            else done.recovered.reached_time.isoformat(),
            "reached_lsn": done.recovered.reached_lsn,
        }

    params = {**jobs.target_params(destination), "source": name, "target": when.describe()}
    job = runner.submit(
        "restore",
        work,
        database=destination.name,
        conn=destination.conn,
        params=params,
        created_by=caller.actor,
    )
    response.headers["Location"] = f"/api/v1/jobs/{job.id}"
    return JobOut.model_validate(job.model_dump())
