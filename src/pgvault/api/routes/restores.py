"""``POST /backups/{id}/restore`` and ``POST /databases/{name}/restore-upload`` (jobs)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Form, Request, Response, UploadFile, status

from pgvault import databases
from pgvault.api.deps import Caller, CatalogDep, RunnerDep, SettingsDep, require_role
from pgvault.api.routes._common import ERRORS
from pgvault.api.schemas import ErrorBody, JobOut, RestoreIn
from pgvault.backups import uploads as transfers
from pgvault.dumps.encryption import decryptor_from
from pgvault.errors import TooLarge
from pgvault.restores import policy as guards
from pgvault.restores import run as restores
from pgvault.service import jobs

router = APIRouter(tags=["restores"], responses=ERRORS, dependencies=[require_role("admin")])
TOO_LARGE: dict[int | str, dict[str, Any]] = {
    413: {"model": ErrorBody, "description": "The upload is over the size limit."}
}


@router.post(
    "/backups/{backup_id}/restore", status_code=status.HTTP_202_ACCEPTED, response_model=JobOut
)
def restore_backup(
    backup_id: str,
    body: RestoreIn,
    response: Response,
    settings: SettingsDep,
    catalog: CatalogDep,
    runner: RunnerDep,
    caller: Caller,
) -> JobOut:
    """Restore a backup into a configured database as a job (the core's safe restore with
    its automatic pre-restore backup). Refused (403) by the target's policies: confirmation,
    passkey, recent backup, environment; 409 while a backup or restore of it runs."""
    record = catalog.get_backup(backup_id)
    target = databases.from_config(settings, body.target or record.database)
    guards.check_restore(
        settings,
        catalog,
        target,
        confirm=body.confirm,
        passkey=body.passkey,
        safety_backup=body.safety_backup,
    )
    request = restores.RestoreRequest(
        target=target,
        backup_id=record.id,
        mode=body.mode,
        confirm=target.conn.dbname,
        safety_backup=body.safety_backup,
        decrypt=decryptor_from(settings.age_identity_file),
        created_by=caller.actor,
    )
    params = {**jobs.target_params(target), "mode": body.mode, "backup_id": record.id}
    job = jobs.start_restore(runner, request, params=params)
    response.headers["Location"] = f"/api/v1/jobs/{job.id}"
    return JobOut.model_validate(job.model_dump())


@router.post(
    "/databases/{name}/restore-upload",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=JobOut,
    responses=TOO_LARGE,
)
def restore_upload(
    name: str,
    file: UploadFile,
    confirm: Annotated[str, Form(max_length=255, description="The database's name.")],
    request: Request,
    response: Response,
    settings: SettingsDep,
    catalog: CatalogDep,
    runner: RunnerDep,
    caller: Caller,
    mode: Annotated[Literal["swap", "clean", "recreate"], Form()] = "swap",
    passkey: Annotated[str | None, Form(max_length=1024)] = None,
) -> JobOut:
    """Upload a dump (custom or plain; gzip/zstd/age by content), store it as a backup with
    trigger ``upload``, check it (``pg_restore --list``), then restore it as a job. Not a
    dump: 400 before any database is touched; over ``api.max_upload_bytes``: 413."""
    limit = settings.api.max_upload_bytes
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > limit + 64 * 1024:
        raise TooLarge(f"the upload is larger than the limit of {limit} bytes")
    target = databases.from_config(settings, name)
    guards.check_restore(
        settings, catalog, target, confirm=confirm, passkey=passkey, safety_backup=True
    )
    runner.ensure_free(target.name, target.conn)
    decrypt = decryptor_from(settings.age_identity_file)
    record = transfers.receive_upload(
        settings,
        catalog,
        target,
        file.file,
        limit=limit,
        decrypt=decrypt,
        created_by=caller.actor,
        filename=file.filename,
    )
    request.state.audit_target = f"backup={record.id}"
    restore = restores.RestoreRequest(
        target=target,
        backup_id=record.id,
        mode=mode,
        confirm=target.conn.dbname,
        decrypt=decrypt,
        created_by=caller.actor,
    )
    params = {**jobs.target_params(target), "mode": mode, "backup_id": record.id}
    job = jobs.start_restore(runner, restore, params=params, kind="upload-restore")
    response.headers["Location"] = f"/api/v1/jobs/{job.id}"
    return JobOut.model_validate(job.model_dump())
