"""``/files/...``: file sets and their snapshots (roles as for backups).

* ``GET    /files/sets``                           viewer    configured sets and their health
* ``POST   /files/sets/{name}/snapshots``          operator  take a snapshot (job; ``wait``)
* ``GET    /files/snapshots``                      viewer    list, filtered and paged
* ``GET    /files/snapshots/{id}``                 viewer    one snapshot
* ``DELETE /files/snapshots/{id}``                 admin     delete it
* ``POST   /files/snapshots/{id}/verify``          operator  verify (job; ``full``)
* ``POST   /files/snapshots/{id}/restore-plan``    admin     what a restore would do
* ``POST   /files/snapshots/{id}/restore``         admin     restore (job; typed confirmation)
* ``POST   /files/retention/apply``                admin     retention + sweep (dry run default)

A request never names a place on disk: ``to`` is an ``s3://`` URL, or the set's own source.
Importing this module also adds a ``files`` entry to :data:`pgvault.api.routes.health.CHECKS`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response, status
from pydantic import BaseModel, Field

from pgvault.api.deps import Caller, CatalogDep, RunnerDep, SettingsDep, require_role
from pgvault.api.routes import health as health_routes
from pgvault.api.routes._common import ERRORS
from pgvault.api.schemas import JobOut
from pgvault.catalog import Catalog
from pgvault.catalog import files as rows
from pgvault.catalog.files import FileSnapshotRecord, SnapshotStatus
from pgvault.catalog.jobs import JobKind
from pgvault.config.settings import Settings
from pgvault.dumps.encryption import decryptor_from
from pgvault.errors import ConfigError, Refused
from pgvault.files import restore, sets, verify
from pgvault.files.plan import RestoreCounts
from pgvault.files.snapshot import SnapshotRequest, snapshot
from pgvault.files.transfer import TransferProgress
from pgvault.operations import file_health as health
from pgvault.operations import file_retention as retention
from pgvault.progress import ProgressEvent
from pgvault.service.jobs import JobContext, JobRunner

router = APIRouter(tags=["files"], responses=ERRORS)


class FileSnapshotOut(FileSnapshotRecord):
    """A file snapshot; sizes bytes, times UTC."""


class FileSnapshotsOut(BaseModel):
    items: list[FileSnapshotOut]
    limit: int
    offset: int


class FileSnapshotDoneOut(BaseModel):
    """``POST /files/sets/{name}/snapshots?wait=true``: the job and the snapshot."""

    job: JobOut
    snapshot: FileSnapshotOut


class FileSetOut(BaseModel):
    """A configured file set and its health (``ok``/``warning``/``critical``)."""

    name: str
    source: str
    storage: list[str]
    databases: list[str] = Field(description="Databases whose backups link this set.")
    status: str
    reasons: list[str]
    last_snapshot_id: str | None
    last_success_at: datetime | None
    last_objects: int | None
    last_bytes: int | None


class FileRestoreIn(BaseModel):
    model_config = {"extra": "forbid"}

    to: str | None = Field(
        default=None,
        max_length=1024,
        description="s3://bucket/prefix; default: where the snapshot was taken from.",
    )
    delete_extra: bool = Field(
        default=False, description="Delete what the snapshot lacks (after a safety snapshot)."
    )
    confirm: str = Field(max_length=255, description="The file set's name.")


class RestorePlanIn(BaseModel):
    model_config = {"extra": "forbid"}

    to: str | None = Field(default=None, max_length=1024)
    delete_extra: bool = False


class RestorePlanOut(BaseModel):
    """What a restore would do; bytes of objects; ``first_*`` the first keys."""

    snapshot_id: str
    destination: str
    objects: int
    to_add: int
    to_change: int
    unchanged: int
    to_delete: int
    extra_kept: int
    add_bytes: int
    change_bytes: int
    first_add: list[str]
    first_change: list[str]
    first_delete: list[str]
    safety_snapshot: bool


class FilePruneItemOut(BaseModel):
    file_set: str
    snapshot_id: str
    status: str
    trigger: str
    started_at: datetime
    bytes: int | None
    keep: bool
    reasons: list[str]
    deleted: bool
    error: str | None


def _destination(
    settings: Settings, catalog: Catalog, snapshot_id: str, to: str | None
) -> str | None:
    """``to`` if a request may name it: an ``s3://`` URL or the set's own source.

    Raises:
        Refused: a local path other than the set's source.
    """
    if to is None or to.startswith("s3://"):
        return to
    record = rows.get_snapshot(catalog, snapshot_id)
    cfg = sets.settings_of(settings, record.file_set)
    if to in (cfg.source, record.source):
        return to
    raise Refused("the API restores only into s3:// URLs or the set's own source: use the CLI")


def _progress(context: JobContext) -> Any:
    def report(state: TransferProgress) -> None:
        total = f"{state.objects_total}" + ("" if state.listing_done else "+")
        phase = f"{state.phase} {state.objects_done}/{total} objects"
        context.progress(ProgressEvent(phase=phase, done=state.bytes_done))

    return report


def _submit(
    runner: JobRunner, kind: JobKind, work: Any, params: dict[str, Any], actor: str
) -> JobOut:
    job = runner.submit(kind, work, params=params, created_by=actor)
    return JobOut.model_validate(job.model_dump())


@router.get("/files/sets", response_model=list[FileSetOut], dependencies=[require_role("viewer")])
def list_sets(settings: SettingsDep, catalog: CatalogDep) -> list[FileSetOut]:
    """The configured file sets, with the databases linking them and their health."""
    by_name = {h.file_set: h for h in health.health(settings, catalog)}
    return [
        FileSetOut(
            name=name,
            source=cfg.source,
            storage=sets.storage_names(settings, cfg),
            databases=sorted(d for d, db in settings.databases.items() if name in db.files),
            status=by_name[name].status,
            reasons=by_name[name].reasons,
            last_snapshot_id=by_name[name].last_snapshot_id,
            last_success_at=by_name[name].last_success_at,
            last_objects=by_name[name].last_objects,
            last_bytes=by_name[name].last_bytes,
        )
        for name, cfg in sorted(settings.files.items())
    ]


@router.post(
    "/files/sets/{name}/snapshots",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=JobOut | FileSnapshotDoneOut,
    responses={200: {"model": FileSnapshotDoneOut, "description": "With wait=true."}},
    dependencies=[require_role("operator")],
)
def start_snapshot(
    name: str,
    response: Response,
    settings: SettingsDep,
    catalog: CatalogDep,
    runner: RunnerDep,
    caller: Caller,
    wait: bool = False,
) -> JobOut | FileSnapshotDoneOut:
    """Take a snapshot of the file set as a job (202 and a ``Location``); ``wait=true``
    answers the snapshot once it is done."""
    sets.settings_of(settings, name)
    request = SnapshotRequest(file_set=name, created_by=caller.actor)

    def work(context: JobContext) -> dict[str, Any]:
        record = snapshot(
            settings, catalog, request, progress=_progress(context), cancel=context.cancel
        )
        return {"snapshot": record.model_dump(mode="json")}

    job = _submit(runner, "files-snapshot", work, {"file_set": name}, caller.actor)
    response.headers["Location"] = f"/api/v1/jobs/{job.id}"
    if not wait:
        return job
    done = runner.wait(job.id)
    response.status_code = status.HTTP_200_OK
    record = FileSnapshotRecord.model_validate((done.result or {})["snapshot"])
    return FileSnapshotDoneOut(
        job=JobOut.model_validate(done.model_dump()),
        snapshot=FileSnapshotOut.model_validate(record.model_dump()),
    )


@router.get(
    "/files/snapshots", response_model=FileSnapshotsOut, dependencies=[require_role("viewer")]
)
def list_snapshots(
    catalog: CatalogDep,
    file_set: Annotated[str | None, Query(max_length=255)] = None,
    status: SnapshotStatus | None = None,
    backup_id: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000_000)] = 0,
) -> FileSnapshotsOut:
    """Snapshots newest first (``deleted`` ones only when asked by ``status``)."""
    found = rows.list_snapshots(
        catalog,
        file_set=file_set,
        statuses=(status,) if status else (),
        backup_id=backup_id,
        limit=limit,
        offset=offset,
    )
    return FileSnapshotsOut(
        items=[FileSnapshotOut.model_validate(r.model_dump()) for r in found],
        limit=limit,
        offset=offset,
    )


@router.get(
    "/files/snapshots/{snapshot_id}",
    response_model=FileSnapshotOut,
    dependencies=[require_role("viewer")],
)
def get_snapshot(snapshot_id: str, catalog: CatalogDep) -> FileSnapshotOut:
    """Everything the catalog knows about one snapshot."""
    return FileSnapshotOut.model_validate(rows.get_snapshot(catalog, snapshot_id).model_dump())


@router.delete(
    "/files/snapshots/{snapshot_id}",
    response_model=FileSnapshotOut,
    dependencies=[require_role("admin")],
)
def delete_snapshot(
    snapshot_id: str, settings: SettingsDep, catalog: CatalogDep
) -> FileSnapshotOut:
    """Delete the snapshot's manifest and index; the row stays as ``deleted``."""
    record = retention.delete_snapshot(settings, catalog, rows.get_snapshot(catalog, snapshot_id))
    return FileSnapshotOut.model_validate(record.model_dump())


@router.post(
    "/files/snapshots/{snapshot_id}/verify",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=JobOut,
    dependencies=[require_role("operator")],
)
def verify_snapshot(
    snapshot_id: str,
    response: Response,
    settings: SettingsDep,
    catalog: CatalogDep,
    runner: RunnerDep,
    caller: Caller,
    full: bool = False,
) -> JobOut:
    """Verify as a job: every blob present with its size; ``full=true`` re-hashes them."""
    rows.get_snapshot(catalog, snapshot_id)
    decrypt = decryptor_from(settings.age_identity_file)

    def work(context: JobContext) -> dict[str, Any]:
        context.step("verifying")
        result = verify.verify(settings, catalog, snapshot_id, full=full, decrypt=decrypt)
        return {"ok": result.ok, "detail": result.detail, "full": full}

    job = _submit(
        runner, "files-verify", work, {"snapshot_id": snapshot_id, "full": full}, caller.actor
    )
    response.headers["Location"] = f"/api/v1/jobs/{job.id}"
    return job


@router.post(
    "/files/snapshots/{snapshot_id}/restore-plan",
    response_model=RestorePlanOut,
    dependencies=[require_role("admin")],
)
def restore_plan(
    snapshot_id: str, body: RestorePlanIn, settings: SettingsDep, catalog: CatalogDep
) -> RestorePlanOut:
    """What a restore would add, change, keep and delete (nothing is changed)."""
    request = restore.FileRestoreRequest(
        snapshot_id=snapshot_id,
        to=_destination(settings, catalog, snapshot_id, body.to),
        delete_extra=body.delete_extra,
        decrypt=decryptor_from(settings.age_identity_file),
    )
    counts: RestoreCounts = restore.plan(settings, catalog, request)
    return RestorePlanOut.model_validate(counts, from_attributes=True)


@router.post(
    "/files/snapshots/{snapshot_id}/restore",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=JobOut,
    dependencies=[require_role("admin")],
)
def restore_snapshot(
    snapshot_id: str,
    body: FileRestoreIn,
    response: Response,
    settings: SettingsDep,
    catalog: CatalogDep,
    runner: RunnerDep,
    caller: Caller,
) -> JobOut:
    """Restore as a job (anything overwritten or deleted is kept in a safety snapshot
    first). ``confirm`` must be the file set's name."""
    record = rows.get_snapshot(catalog, snapshot_id)
    if body.confirm != record.file_set:
        raise Refused(f"confirmation does not match: give the file set's name {record.file_set!r}")
    request = restore.FileRestoreRequest(
        snapshot_id=record.id,
        to=_destination(settings, catalog, record.id, body.to),
        delete_extra=body.delete_extra,
        decrypt=decryptor_from(settings.age_identity_file),
        created_by=caller.actor,
    )

    def work(context: JobContext) -> dict[str, Any]:
        result = restore.run(
            settings, catalog, request, progress=_progress(context), cancel=context.cancel
        )
        keys = ("restored_objects", "restored_bytes", "skipped_unchanged", "deleted_extra")
        return {k: getattr(result, k) for k in (*keys, "safety_snapshot_id")}

    params = {"snapshot_id": record.id, "to": body.to, "delete_extra": body.delete_extra}
    job = _submit(runner, "files-restore", work, params, caller.actor)
    response.headers["Location"] = f"/api/v1/jobs/{job.id}"
    return job


@router.post(
    "/files/retention/apply",
    response_model=list[FilePruneItemOut],
    dependencies=[require_role("admin")],
)
def apply_retention(
    settings: SettingsDep,
    catalog: CatalogDep,
    dry_run: bool = True,
    keep_last: Annotated[int | None, Query(ge=1)] = None,
    file_set: Annotated[str | None, Query(max_length=255)] = None,
) -> list[FilePruneItemOut]:
    """Apply the sets' retention (or "keep the last N"), then sweep unreferenced blobs;
    ``dry_run`` (the default) only reports."""
    if file_set is not None and file_set not in settings.files:
        raise ConfigError(f"no file set {file_set!r} in the config")
    report = retention.apply(
        settings, catalog, file_set=file_set, dry_run=dry_run, keep_last=keep_last
    )
    return [
        FilePruneItemOut.model_validate({**item.__dict__, "reasons": list(item.reasons)})
        for item in report.items
    ]


def _files_check(settings: Settings, catalog: Catalog) -> dict[str, Any]:
    found = health.health(settings, catalog)
    worst = max((h.status for h in found), key=health.LEVELS.__getitem__, default="ok")
    return {"ok": worst != "critical", "status": worst}


health_routes.CHECKS.setdefault("files", _files_check)
