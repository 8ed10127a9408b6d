"""``POST /backups/{id}/restore-preview``, ``POST /backups/{id}/restore`` and
``POST /databases/{name}/restore-upload`` (jobs). Targets are configured databases only:
no URL or path from a request ever names a place to restore into."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Form, Request, Response, UploadFile, status

from pgvault import restores
from pgvault.api.deps import (
    Caller,
    CatalogDep,
    RunnerDep,
    SettingsDep,
    client_address,
    require_role,
)
from pgvault.api.routes._common import ERRORS
from pgvault.api.schemas import ErrorBody, JobOut, RestoreIn, RestorePreviewIn
from pgvault.config.settings import Settings
from pgvault.dumps.encryption import decryptor_from
from pgvault.errors import TooLarge
from pgvault.restores import policy
from pgvault.service import jobs

router = APIRouter(tags=["restores"], responses=ERRORS, dependencies=[require_role("admin")])
TOO_LARGE: dict[int | str, dict[str, Any]] = {
    413: {"model": ErrorBody, "description": "The upload is over the size limit."}
}


def _request(
    settings: Settings,
    catalog: CatalogDep,
    backup_id: str,
    body: RestorePreviewIn,
    actor: str,
    client: str | None = None,
) -> restores.RestoreRequest:
    record = catalog.get_backup(backup_id)
    target = restores.resolve_target(settings, record=record, database=body.target)
    return restores.RestoreRequest(
        target=target,
        backup_id=record.id,
        mode=body.mode,
        confirm=body.confirm if isinstance(body, RestoreIn) else None,
        passkey=body.passkey if isinstance(body, RestoreIn) else None,
        safety_backup=body.safety_backup,
        decrypt=decryptor_from(settings.age_identity_file),
        created_by=actor,
        client=f"{actor}@{client}",
    )


@router.post("/backups/{backup_id}/restore-preview", response_model=restores.RestorePreview)
def preview_restore(
    backup_id: str,
    body: RestorePreviewIn,
    settings: SettingsDep,
    catalog: CatalogDep,
    caller: Caller,
) -> restores.RestorePreview:
    """What a restore would do, changing nothing (what ``pgvault restore --dry-run`` shows):
    the archive's objects by type, rows per table at backup time beside the target's now,
    whether a safety backup is taken, and the guards that apply."""
    request = _request(settings, catalog, backup_id, body, caller.actor)
    policy.check_environment(settings, request.target)
    return restores.plan(settings, catalog, request).preview


@router.post(
    "/backups/{backup_id}/restore", status_code=status.HTTP_202_ACCEPTED, response_model=JobOut
)
def restore_backup(
    backup_id: str,
    body: RestoreIn,
    request: Request,
    response: Response,
    settings: SettingsDep,
    catalog: CatalogDep,
    runner: RunnerDep,
    caller: Caller,
) -> JobOut:
    """Restore a backup into a configured database as a job (the core's safe restore with
    its automatic pre-restore backup). Refused (403) by the target's policies: confirmation,
    passkey, recent backup, environment; 409 while a backup or restore of it runs."""
    client = client_address(request)
    job = jobs.restore_backup(
        runner, _request(settings, catalog, backup_id, body, caller.actor, client)
    )
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
    restore = restores.RestoreRequest(
        target=restores.resolve_target(settings, record=None, database=name),
        mode=mode,
        confirm=confirm,
        passkey=passkey,
        decrypt=decryptor_from(settings.age_identity_file),
        created_by=caller.actor,
        client=f"{caller.actor}@{client_address(request)}",
    )
    record, job = jobs.restore_upload(
        runner, restore, file.file, limit=limit, filename=file.filename
    )
    request.state.audit_target = f"backup={record.id}"
    response.headers["Location"] = f"/api/v1/jobs/{job.id}"
    return JobOut.model_validate(job.model_dump())
