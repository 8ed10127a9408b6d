"""``GET /databases``, ``GET /databases/{name}/dump``."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from pgvault import backups, databases
from pgvault.api.deps import Caller, CatalogDep, RunnerDep, SettingsDep, require_role
from pgvault.api.routes._common import ERRORS
from pgvault.api.schemas import DatabaseOut
from pgvault.api.streams import ChunkQueue
from pgvault.operations import monitoring
from pgvault.service import jobs, live_dumps

router = APIRouter(tags=["databases"], responses=ERRORS)


@router.get("/databases", response_model=list[DatabaseOut], dependencies=[require_role("viewer")])
def list_databases(settings: SettingsDep, catalog: CatalogDep) -> list[DatabaseOut]:
    """Configured databases with their environment, newest backup and health."""
    return [DatabaseOut.of(s) for s in monitoring.overview(settings, catalog)]


@router.get(
    "/databases/{name}/dump",
    dependencies=[require_role("operator")],
    response_class=StreamingResponse,
    responses={200: {"content": {"application/octet-stream": {}}}},
)
def dump(
    name: str,
    request: Request,
    settings: SettingsDep,
    runner: RunnerDep,
    caller: Caller,
    keep: bool = False,
) -> StreamingResponse:
    """Stream a fresh dump of ``name`` as pg_dump produces it (a custom archive, compressed
    and encrypted as that database's backups are; first bytes within about a second). With
    ``keep=true`` the same bytes are stored and recorded as a backup while they stream
    (header ``X-Pgvault-Backup-Id``), never read back. The dump runs as a job (header
    ``X-Pgvault-Job``); if it fails the response is cut off, never ended as if whole."""
    target = databases.from_config(settings, name)
    planned = backups.plan_live(settings, backups.BackupRequest(target, created_by=caller.actor))
    pipe = ChunkQueue()
    job = live_dumps.start_dump(runner, planned, pipe, keep=keep, params=jobs.target_params(target))
    headers = {
        "Content-Disposition": f'attachment; filename="{planned.key.rsplit("/", 1)[-1]}"',
        "X-Pgvault-Job": job.id,
    }
    if keep:
        headers["X-Pgvault-Backup-Id"] = planned.backup_id
    request.state.audit_target = f"backup={planned.backup_id}" if keep else f"job={job.id}"
    return StreamingResponse(
        pipe.chunks(lambda: runner.wait(job.id)),
        media_type="application/octet-stream",
        headers=headers,
    )
