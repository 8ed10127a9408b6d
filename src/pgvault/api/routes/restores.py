"""``POST /backups/{id}/restore-preview``, ``POST /backups/{id}/restore`` and
``POST /databases/{name}/restore-upload`` (jobs). Targets are configured databases only:
no URL or path from a request ever names a place to restore into."""

from __future__ import annotations

from typing import IO, Any, cast, get_args

from fastapi import APIRouter, Request, Response, status

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
from pgvault.api.uploads import MultipartStream, check_length, multipart_body
from pgvault.config.settings import RestoreMode, Settings
from pgvault.dumps.encryption import decryptor_from
from pgvault.errors import ConfigError
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


UPLOAD_FORM = multipart_body(
    {
        "confirm": {"type": "string", "maxLength": 255, "description": "The database's name."},
        "mode": {"type": "string", "enum": list(get_args(RestoreMode)), "default": "swap"},
        "passkey": {"type": "string", "maxLength": 1024},
    },
    required=["confirm"],
)


@router.post(
    "/databases/{name}/restore-upload",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=JobOut,
    responses=TOO_LARGE,
    openapi_extra=UPLOAD_FORM,
)
def restore_upload(
    name: str,
    request: Request,
    response: Response,
    settings: SettingsDep,
    runner: RunnerDep,
    caller: Caller,
) -> JobOut:
    """Upload a dump (custom or plain; gzip/zstd/age by content) as ``multipart/form-data``
    with the fields ``confirm`` (and ``mode``, ``passkey``) before the ``file`` part. The
    policy is checked before the file is read; the file streams into storage as a backup
    with trigger ``upload`` while it is checked (no temporary copy), is listed
    (``pg_restore --list``), then restored as a job. Not a dump: 400 before any database
    is touched; over ``api.max_upload_bytes``: 413."""
    limit = settings.api.max_upload_bytes
    check_length(request, limit)
    form = MultipartStream(request)
    fields = form.read_fields()
    confirm, mode = fields.get("confirm"), fields.get("mode") or "swap"
    if not confirm or len(confirm) > 255:
        raise ConfigError("give the field confirm (the database's name) before the file")
    if mode not in get_args(RestoreMode):
        raise ConfigError(f"mode {mode!r} is not one of {', '.join(get_args(RestoreMode))}")
    restore = restores.RestoreRequest(
        target=restores.resolve_target(settings, record=None, database=name),
        mode=mode,  # type: ignore[arg-type]
        confirm=confirm,
        passkey=fields.get("passkey") or None,
        decrypt=decryptor_from(settings.age_identity_file),
        created_by=caller.actor,
        client=f"{caller.actor}@{client_address(request)}",
    )
    record, job = jobs.restore_upload(
        runner, restore, cast(IO[bytes], form), limit=limit, filename=form.filename
    )
    request.state.audit_target = f"backup={record.id}"
    response.headers["Location"] = f"/api/v1/jobs/{job.id}"
    return JobOut.model_validate(job.model_dump())
