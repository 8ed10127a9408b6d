"""``/restore``: the restore wizard (admins). Choose a backup (or upload a dump), the target
among the configured databases and the mode; the preview is the domain's restore plan
(``pgvault restore --dry-run``): objects by type, rows then and now, the guards, the safety
backup. The confirmation (typed name, passkey) is checked by the restore itself; every
refusal is shown on the same page, and nothing is changed."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Form, Query, Request, UploadFile
from fastapi.responses import Response

from pgvault import restores
from pgvault.catalog.records import BackupRecord
from pgvault.dumps.encryption import decryptor_from
from pgvault.errors import PgvaultError, http_status
from pgvault.restores import policy
from pgvault.service import jobs
from pgvault.web.deps import Parts, Viewer, acting, require
from pgvault.web.render import PageRoute, page, redirect

router = APIRouter(route_class=PageRoute, include_in_schema=False)
Mode = Literal["swap", "clean", "recreate"]
MODES = {
    "swap": "Restore into a new scratch database, check it, then swap it in; the database "
    "you had is kept as *_pre_restore_* (the safe default).",
    "clean": "Drop and reload the backup's tables inside the live database in one "
    "transaction (all or nothing); its other tables stay.",
    "recreate": "Drop the database and create it again from the backup; the automatic "
    "safety backup is the only way back.",
}
CHOICES = 50


def _request(
    parts: Parts,
    viewer: Viewer,
    record: BackupRecord,
    target: str | None,
    mode: Mode,
    **answers: Any,
) -> restores.RestoreRequest:
    return restores.RestoreRequest(
        target=restores.resolve_target(parts.settings, record=record, database=target or None),
        backup_id=record.id,
        mode=mode,
        decrypt=decryptor_from(parts.settings.age_identity_file),
        created_by=viewer.actor,
        **answers,
    )


def _wizard(
    request: Request,
    parts: Parts,
    viewer: Viewer,
    *,
    backup: str | None,
    target: str | None,
    mode: Mode,
    preview: bool,
    status: int = 200,
    error: str | None = None,
    safety_backup: bool = True,
) -> Response:
    """The wizard at the step its arguments reach; a domain error is shown in its place."""
    values: dict[str, Any] = {
        "modes": MODES,
        "mode": mode,
        "names": sorted(parts.settings.databases),
        "target": target or "",
        "record": None,
        "plan": None,
        "passkey_needed": False,
        "safety_backup": safety_backup,
        "choices": [],
    }
    try:
        if not backup:
            values["choices"] = parts.catalog.search_backups(status="completed", limit=CHOICES)
        else:
            record = values["record"] = parts.catalog.get_backup(backup)
            if not target and record.database in parts.settings.databases:
                values["target"] = record.database
            if preview:
                planned = _request(parts, viewer, record, values["target"], mode)
                values["target"] = planned.target.name
                values["passkey_needed"] = planned.target.settings.restore_passkey_hash is not None
                policy.check_environment(parts.settings, planned.target)
                values["plan"] = restores.plan(parts.settings, parts.catalog, planned).preview
    except PgvaultError as exc:
        status, error = (status if error else http_status(exc)[0]), error or str(exc)
    return page(request, "restore.html", status=status, title="Restore", error=error, **values)


@router.get("/restore", dependencies=[require("admin")])
def wizard(
    request: Request,
    viewer: Viewer,
    parts: Parts,
    backup: Annotated[str | None, Query(max_length=64)] = None,
    target: Annotated[str | None, Query(max_length=255)] = None,
    mode: Mode = "swap",
    preview: bool = False,
) -> Response:
    """The wizard's steps: backup, target and mode, preview and confirmation."""
    return _wizard(request, parts, viewer, backup=backup, target=target, mode=mode, preview=preview)


@router.post("/restore", dependencies=acting("admin"))
def restore(
    request: Request,
    viewer: Viewer,
    parts: Parts,
    backup: Annotated[str, Form(max_length=64)],
    target: Annotated[str, Form(max_length=255)],
    mode: Annotated[Mode, Form()] = "swap",
    confirm: Annotated[str, Form(max_length=255)] = "",
    passkey: Annotated[str | None, Form(max_length=1024)] = None,
    safety_backup: Annotated[bool, Form()] = False,
) -> Response:
    """Start the restore job, which checks the policy (typed name, passkey, recent backup,
    environment) before it touches anything; a refusal shows the preview again with the
    reason."""
    try:
        record = parts.catalog.get_backup(backup)
        planned = _request(
            parts,
            viewer,
            record,
            target,
            mode,
            confirm=confirm,
            passkey=passkey or None,
            safety_backup=safety_backup,
        )
        job = jobs.restore_backup(parts.runner, planned)
    except PgvaultError as exc:
        return _wizard(
            request,
            parts,
            viewer,
            backup=backup,
            target=target,
            mode=mode,
            preview=True,
            status=http_status(exc)[0],
            error=f"{exc}. Nothing was changed.",
            safety_backup=safety_backup,
        )
    return redirect(f"/jobs/{job.id}")


@router.post("/restore/upload", dependencies=acting("admin"))
def restore_upload(
    request: Request,
    viewer: Viewer,
    parts: Parts,
    file: UploadFile,
    target: Annotated[str, Form(max_length=255)],
    mode: Annotated[Mode, Form()] = "swap",
    confirm: Annotated[str, Form(max_length=255)] = "",
    passkey: Annotated[str | None, Form(max_length=1024)] = None,
) -> Response:
    """Upload a dump and restore it (checked with ``pg_restore --list`` first; the policy
    is checked before the upload is kept)."""
    try:
        planned = restores.RestoreRequest(
            target=restores.resolve_target(parts.settings, record=None, database=target),
            mode=mode,
            confirm=confirm,
            passkey=passkey or None,
            decrypt=decryptor_from(parts.settings.age_identity_file),
            created_by=viewer.actor,
        )
        record, job = jobs.restore_upload(
            parts.runner,
            planned,
            file.file,
            limit=parts.settings.api.max_upload_bytes,
            filename=file.filename,
        )
    except PgvaultError as exc:
        return _wizard(
            request,
            parts,
            viewer,
            backup=None,
            target=target,
            mode=mode,
            preview=False,
            status=http_status(exc)[0],
            error=f"{exc}. Nothing was changed.",
        )
    request.state.audit_target = f"backup={record.id}"
    return redirect(f"/jobs/{job.id}")
