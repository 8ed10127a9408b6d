"""``GET /databases``, ``GET /databases/{name}/dump``."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from pgvault import backups, databases
from pgvault.api.deps import Caller, CatalogDep, RunnerDep, SettingsDep, require_role
from pgvault.api.routes._common import ERRORS
from pgvault.api.schemas import DatabaseOut
from pgvault.api.streams import backup_download
from pgvault.operations import monitoring
from pgvault.service import jobs

router = APIRouter(tags=["databases"], responses=ERRORS)
CHUNK = 1024 * 1024


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
    catalog: CatalogDep,
    runner: RunnerDep,
    caller: Caller,
) -> StreamingResponse:
    """Take a fresh backup of ``name`` (recorded in the catalog) and stream it."""
    target = databases.from_config(settings, name)
    request_ = backups.BackupRequest(target=target, created_by=caller.actor)
    job = jobs.start_backup(runner, request_, params=jobs.target_params(target))
    done = runner.wait(job.id)
    record, stream = backups.open_backup(settings, catalog, str(done.backup_id))
    request.state.audit_target = f"backup={record.id}"
    return backup_download(record, stream)
