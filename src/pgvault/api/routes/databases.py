"""``GET /databases``, ``GET /databases/{name}/dump``."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import IO

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from pgvault import databases
from pgvault.api.deps import Caller, CatalogDep, RunnerDep, SettingsDep, require_role
from pgvault.api.routes._common import ERRORS
from pgvault.api.schemas import BackupOut, DatabaseOut
from pgvault.backups import run as backups
from pgvault.backups import uploads as transfers
from pgvault.catalog import Catalog
from pgvault.config.settings import Settings
from pgvault.operations import monitoring
from pgvault.service import jobs

router = APIRouter(tags=["databases"], responses=ERRORS)
CHUNK = 1024 * 1024


def overview(settings: Settings, catalog: Catalog) -> list[DatabaseOut]:
    """Each configured database with its environment, newest completed backup and health
    status (:func:`pgvault.operations.monitoring.health`)."""
    now = datetime.now(UTC)
    status = {db.database: db for db in monitoring.health(settings, catalog, now).databases}
    found = []
    for name in sorted(settings.databases):
        target = databases.from_config(settings, name)
        newest = catalog.list_backups(database=name, status="completed", limit=1)
        found.append(
            DatabaseOut(
                name=name,
                dbname=target.conn.dbname,
                server=target.conn.display(),
                environment=target.environment,
                restore_target=target.environment == settings.environment,
                newest_backup=BackupOut.of(newest[0]) if newest else None,
                newest_age_seconds=(now - newest[0].started_at).total_seconds() if newest else None,
                status=status[name].status if name in status else None,
                reasons=status[name].reasons if name in status else [],
            )
        )
    return found


@router.get("/databases", response_model=list[DatabaseOut], dependencies=[require_role("viewer")])
def list_databases(settings: SettingsDep, catalog: CatalogDep) -> list[DatabaseOut]:
    """Configured databases with their environment and newest backup."""
    return overview(settings, catalog)


def chunks(stream: IO[bytes]) -> Iterator[bytes]:
    """Read ``stream`` in 1 MiB chunks, closing it at the end (or when the client leaves)."""
    try:
        while chunk := stream.read(CHUNK):
            yield chunk
    finally:
        stream.close()


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
    record, stream = transfers.open_backup(settings, catalog, str(done.backup_id))
    request.state.audit_target = f"backup={record.id}"
    return StreamingResponse(
        chunks(stream),
        media_type="application/octet-stream",
        headers={
            "Content-Disposition": f'attachment; filename="{transfers.download_name(record)}"',
            "Content-Length": str(record.size_bytes),
        },
    )
