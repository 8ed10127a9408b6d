"""``/backups/new``: start a backup (database, format, compression, specific tables from the
database's own table list, labels, storage target); the job's page shows its progress."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import Response

from pgvault import backups, databases
from pgvault.errors import ConfigError, PgvaultError, http_status
from pgvault.service import jobs
from pgvault.web import format as fmt
from pgvault.web.deps import Parts, Viewer, acting, require
from pgvault.web.render import PageRoute, page, redirect

router = APIRouter(route_class=PageRoute, include_in_schema=False)
FORMATS = {
    "": "as configured (or the fastest restorable form)",
    "custom": "custom: one archive, pg_restore reads it",
    "directory": "directory: parallel dump and restore (stored as a tar)",
    "plain": "plain: an SQL script",
}
COMPRESSIONS = {"": "as configured", "zstd": "zstd", "gzip": "gzip", "none": "none"}


def _form(
    request: Request,
    parts: Parts,
    database: str | None,
    *,
    status: int = 200,
    error: str | None = None,
    chosen: dict[str, Any] | None = None,
) -> Response:
    tables: list[str] = []
    table_error = None
    if database:
        try:
            tables = databases.list_tables(databases.from_config(parts.settings, database))
        except PgvaultError as exc:
            table_error = f"the table list of {database} could not be read: {exc}"
    return page(
        request,
        "new_backup.html",
        status=status,
        title="New backup",
        error=error,
        names=sorted(parts.settings.databases),
        database=database or "",
        tables=tables,
        table_error=table_error,
        formats=FORMATS,
        compressions=COMPRESSIONS,
        targets=sorted(parts.settings.storage_targets),
        chosen=chosen or {},
        configured_storage=(
            parts.settings.databases[database].storage
            if database in parts.settings.databases
            else []
        ),
    )


@router.get("/backups/new", dependencies=[require("operator")])
def new_backup(
    request: Request,
    parts: Parts,
    database: Annotated[str | None, Query(max_length=255)] = None,
) -> Response:
    """The form; choosing a database fills the table list from it."""
    if database is None and len(parts.settings.databases) == 1:
        database = next(iter(parts.settings.databases))
    return _form(request, parts, database)


@router.post("/backups/new", dependencies=acting("operator"))
def start_backup(
    request: Request,
    viewer: Viewer,
    parts: Parts,
    database: Annotated[str, Form(min_length=1, max_length=255)],
    dump_format: Annotated[str, Form(alias="format", max_length=16)] = "",
    compression: Annotated[str, Form(max_length=16)] = "",
    tables: Annotated[list[str] | None, Form(max_length=1000)] = None,
    labels: Annotated[str, Form(max_length=10_000)] = "",
    storage: Annotated[str, Form(max_length=1000)] = "",
) -> Response:
    """Start the backup job and open its page (refusals, e.g. a backup already running,
    are shown on the form)."""
    chosen = {
        "format": dump_format,
        "compression": compression,
        "tables": tables or [],
        "labels": labels,
        "storage": storage,
    }
    try:
        target = databases.from_config(parts.settings, database)
        if storage and storage not in parts.settings.storage_targets:
            raise ConfigError(f"no storage target named {storage!r} in the config")
        if dump_format not in FORMATS or compression not in COMPRESSIONS:
            raise ConfigError("choose a format and a compression from the lists")
        backup_request = backups.BackupRequest(
            target=target,
            dump_format=dump_format or None,
            compression=compression or None,
            tables=tuple(tables or ()),
            labels=fmt.label_pairs(labels),
            storage=storage or None,
            created_by=viewer.actor,
        )
        params = {
            **jobs.target_params(target),
            **{k: v for k, v in chosen.items() if v and k != "labels"},
            **({"labels": backup_request.labels} if backup_request.labels else {}),
        }
        job = jobs.start_backup(parts.runner, backup_request, params=params)
    except PgvaultError as exc:
        return _form(
            request, parts, database, status=http_status(exc)[0], error=str(exc), chosen=chosen
        )
    request.state.audit_target = f"job={job.id}"
    return redirect(f"/jobs/{job.id}")
