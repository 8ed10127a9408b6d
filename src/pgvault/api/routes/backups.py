"""``/backups``: start (as a job), list, show, delete, download, verify."""

from __future__ import annotations

from collections import defaultdict
from typing import IO, Annotated, Any, cast

from fastapi import APIRouter, Header, Query, Request, Response, status
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import AwareDatetime

from pgvault import backups, databases
from pgvault.api.deps import (
    Caller,
    CatalogDep,
    RunnerDep,
    SettingsDep,
    TokensDep,
    require_role,
)
from pgvault.api.routes._common import ERRORS
from pgvault.api.schemas import (
    BackupDoneOut,
    BackupIn,
    BackupOut,
    BackupsOut,
    BackupStatusQ,
    DayGroup,
    DownloadLinkOut,
    JobOut,
    TriggerQ,
)
from pgvault.api.streams import backup_download
from pgvault.api.uploads import MultipartStream, check_length, multipart_body
from pgvault.catalog.records import BackupRecord
from pgvault.config.settings import Settings
from pgvault.dumps.encryption import decryptor_from
from pgvault.errors import ConfigError
from pgvault.operations import prune
from pgvault.service import jobs

router = APIRouter(tags=["backups"], responses=ERRORS)
STREAM: dict[int | str, dict[str, Any]] = {
    200: {"content": {"application/octet-stream": {}}, "description": "The stored bytes."}
}


@router.post(
    "/backups",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=JobOut | BackupDoneOut,
    responses={200: {"model": BackupDoneOut, "description": "With wait=true: the backup."}},
    dependencies=[require_role("operator")],
)
def start_backup(
    body: BackupIn,
    request: Request,
    response: Response,
    settings: SettingsDep,
    catalog: CatalogDep,
    runner: RunnerDep,
    caller: Caller,
    wait: bool = False,
    idempotency_key: Annotated[str | None, Header(max_length=255)] = None,
) -> JobOut | BackupDoneOut:
    """Start a backup job (202 with the job and a ``Location``). ``wait=true`` blocks until
    it ends and answers the backup. The same ``Idempotency-Key`` within a day answers the
    same job instead of starting another."""
    target = databases.from_config(settings, body.database)
    _configured_storage(settings, body.storage)
    backup_request = backups.BackupRequest(
        target=target,
        dump_format=body.format,
        compression=body.compression,
        tables=body.tables,
        exclude_tables=body.exclude_tables,
        labels=body.labels,
        storage=body.storage,
        created_by=caller.actor,
    )
    params = {**jobs.target_params(target), **body.model_dump(exclude_defaults=True)}
    job_id = jobs.start_backup_once(
        runner,
        backup_request,
        params=params,
        actor=caller.actor,
        idempotency_key=idempotency_key,
    )
    request.state.audit_target = f"job={job_id}"
    response.headers["Location"] = f"/api/v1/jobs/{job_id}"
    if not wait:
        return JobOut.model_validate(runner.get(job_id).model_dump())
    job = runner.wait(job_id)
    response.status_code = status.HTTP_200_OK
    return BackupDoneOut(
        job=JobOut.model_validate(job.model_dump()),
        backup=BackupOut.of(catalog.get_backup(str(job.backup_id))),
    )


def _configured_storage(settings: Settings, name: str | None) -> None:
    """Over the API a storage target is chosen by its configured name only: no path or URL
    from a request ever becomes a place pgvault writes to.

    Raises:
        ConfigError: not a configured target's name (400, listing the names).
    """
    if name is None or name in settings.storage_targets:
        return
    known = ", ".join(sorted(settings.storage_targets)) or "none configured"
    raise ConfigError(
        f"unknown storage target {name[:80]!r}: name one of the configured targets ({known}); "
        "paths and URLs are not accepted here"
    )


@router.get("/backups", response_model=BackupsOut, dependencies=[require_role("viewer")])
def list_backups(
    catalog: CatalogDep,
    database: str | None = None,
    environment: str | None = None,
    status: BackupStatusQ | None = None,
    trigger: TriggerQ | None = None,
    since: AwareDatetime | None = None,
    until: AwareDatetime | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000_000)] = 0,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
    group_by: Annotated[str | None, Query(pattern="^day$")] = None,
) -> BackupsOut:
    """Backups newest first, filtered and paged; ``group_by=day`` adds per-day totals of
    the page (the history view). For deep or changing lists pass the answer's
    ``next_cursor`` as ``cursor`` (keyset paging: no row twice or skipped while backups
    are added); ``offset`` still works and counts from the cursor."""
    page = catalog.page_backups(
        database=database,
        environment=environment,
        status=status,
        trigger=trigger,
        since=since,
        until=until,
        limit=limit,
        offset=offset,
        cursor=cursor,
    )
    return BackupsOut(
        items=[BackupOut.of(r) for r in page.items],
        limit=limit,
        offset=offset,
        next_cursor=page.next_cursor,
        days=_days(page.items) if group_by == "day" else None,
    )


def _days(records: list[BackupRecord]) -> list[DayGroup]:
    groups: dict[str, list[BackupRecord]] = defaultdict(list)
    for record in records:
        groups[f"{record.started_at:%Y-%m-%d}"].append(record)
    return [
        DayGroup(
            day=day,
            count=len(items),
            completed=sum(r.status == "completed" for r in items),
            failed=sum(r.status in ("failed", "interrupted") for r in items),
            total_bytes=sum(r.size_bytes or 0 for r in items if r.status == "completed"),
        )
        for day, items in sorted(groups.items(), reverse=True)
    ]


@router.get("/backups/{backup_id}", response_model=BackupOut, dependencies=[require_role("viewer")])
def get_backup(backup_id: str, catalog: CatalogDep) -> BackupOut:
    """Everything the catalog knows about one backup."""
    return BackupOut.of(catalog.get_backup(backup_id))


@router.delete(
    "/backups/{backup_id}", response_model=BackupOut, dependencies=[require_role("admin")]
)
def delete_backup(backup_id: str, settings: SettingsDep, catalog: CatalogDep) -> BackupOut:
    """Delete the stored files; the row stays as ``deleted``. 403 for one of the database's
    ``minimum_redundancy`` newest completed backups."""
    return BackupOut.of(prune.delete_backup(settings, catalog, backup_id))


def _stream(settings: SettingsDep, catalog: CatalogDep, backup_id: str) -> StreamingResponse:
    record, stream = backups.open_backup(settings, catalog, backup_id)
    return backup_download(record, stream)


@router.get(
    "/backups/{backup_id}/download",
    response_class=StreamingResponse,
    responses=STREAM,
    dependencies=[require_role("operator")],
)
def download(backup_id: str, settings: SettingsDep, catalog: CatalogDep) -> StreamingResponse:
    """The stored bytes, streamed in 1 MiB chunks (as stored: compressed, maybe encrypted)."""
    return _stream(settings, catalog, backup_id)


@router.post(
    "/backups/{backup_id}/download-link",
    response_model=DownloadLinkOut,
    dependencies=[require_role("operator")],
)
def download_link(
    backup_id: str, catalog: CatalogDep, tokens: TokensDep, caller: Caller
) -> DownloadLinkOut:
    """A signed link, valid a few minutes, for browsers (no bearer token in a URL); it stops
    working when its creator is deleted, disabled or revoked."""
    catalog.get_backup(backup_id)
    token, expires = tokens.sign_download(backup_id, caller)
    return DownloadLinkOut(url=f"/api/v1/downloads/{token}", expires_at=expires)


@router.get("/downloads/{token}", response_class=StreamingResponse, responses=STREAM)
def signed_download(
    token: str, request: Request, settings: SettingsDep, catalog: CatalogDep, tokens: TokensDep
) -> StreamingResponse:
    """Download by a signed link (``POST /backups/{id}/download-link``); 401 once expired."""
    backup_id, creator = tokens.check_download(token)
    request.state.audit_actor = f"download-link:{creator.actor}"
    request.state.audit_target = f"backup={backup_id}"
    return _stream(settings, catalog, backup_id)


@router.post(
    "/backups/{backup_id}/verify",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=JobOut,
    dependencies=[require_role("operator")],
)
def verify_backup(
    backup_id: str,
    response: Response,
    settings: SettingsDep,
    catalog: CatalogDep,
    runner: RunnerDep,
    caller: Caller,
    full: bool = False,
) -> JSONResponse | JobOut:
    """Verify a backup as a job: bytes and archive; ``full=true`` also test-restores it on
    its database's server and compares row counts."""
    record = catalog.get_backup(backup_id)
    server_conn = None
    if full:
        server_conn = databases.from_config(settings, record.database).conn
    job = jobs.start_verify(
        runner,
        record.id,
        full=full,
        server_conn=server_conn,
        decrypt=decryptor_from(settings.age_identity_file),
        created_by=caller.actor,
    )
    response.headers["Location"] = f"/api/v1/jobs/{job.id}"
    return JobOut.model_validate(job.model_dump())


@router.post(
    "/backups/upload",
    status_code=status.HTTP_201_CREATED,
    response_model=BackupOut,
    responses={413: {"description": "The upload is over the size limit."}},
    dependencies=[require_role("admin")],
    openapi_extra=multipart_body({}, required=[]),
)
def upload_backup(
    request: Request,
    settings: SettingsDep,
    catalog: CatalogDep,
    caller: Caller,
    database: Annotated[str, Query(max_length=255, description="A configured database.")],
) -> BackupOut:
    """Store an uploaded dump (``multipart/form-data``, one ``file`` part; custom, plain or a
    directory tar; gzip/zstd/age by content) as a completed backup of ``database`` with
    trigger ``upload``. The file streams into storage while it is checked (no temporary
    copy); not a dump: 400, nothing kept; over ``api.max_upload_bytes``: 413."""
    target = databases.from_config(settings, database)
    limit = settings.api.max_upload_bytes
    check_length(request, limit)
    form = MultipartStream(request)
    form.read_fields()
    record = backups.receive_upload(
        settings,
        catalog,
        target,
        cast(IO[bytes], form),
        limit=limit,
        decrypt=decryptor_from(settings.age_identity_file),
        created_by=caller.actor,
        filename=form.filename,
    )
    request.state.audit_target = f"backup={record.id}"
    return BackupOut.of(record)
