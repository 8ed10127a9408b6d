"""The service's jobs: backups, restores, uploads and verifications, each run as a job by the
:class:`~pgvault.service.runner.JobRunner` (threads, progress, cancellation, catalog rows).

A :class:`JobRunner` belongs to one service process. :meth:`JobRunner.submit` refuses
(:class:`Busy`) a backup or restore of a database that already has one running, here or in
another pgvault process; the job's thread calls the domain function with ``progress=`` and
``cancel=`` and records ``completed``, ``failed`` or ``cancelled``. Progress (phase, bytes,
rate in bytes/s) is kept in memory and written to the catalog at most once a second, so
``GET /jobs/{id}`` is cheap. A cancelled backup removes its partial object (row
``interrupted``); a cancelled restore stops before its swap and changes nothing.

Jobs left ``queued``/``running`` by a dead process of this host are marked ``interrupted``
when the next runner starts (:meth:`JobRunner.recover`).
"""

from __future__ import annotations

import dataclasses
import logging
from datetime import timedelta
from typing import IO, Any

from pgvault import backups, restores, runtime
from pgvault.catalog import Catalog
from pgvault.catalog import jobs as rows
from pgvault.catalog.jobs import JobKind, JobRecord
from pgvault.catalog.records import BackupRecord
from pgvault.databases import DatabaseTarget
from pgvault.dumps.layers import DecryptHook
from pgvault.operations import verify
from pgvault.postgres.conninfo import ConnInfo
from pgvault.service.runner import ENDED, JobContext, JobRunner, watch

log = logging.getLogger(__name__)

__all__ = ["ENDED", "JobContext", "JobRunner", "watch"]  # the runner, seen from here

# --- the jobs the service runs ---------------------------------------------------------


def start_backup(
    runner: JobRunner, request: backups.BackupRequest, *, params: dict[str, Any]
) -> JobRecord:
    """A backup job (``backups.create``); its result holds ``backup`` (the record). Its
    params get ``expected_bytes``, the size of the database's newest completed backup of the
    same tables, when there is one: the total a progress bar and its ETA measure against.

    Raises:
        Busy: a backup or restore of the database is running.
    """
    expected = expected_size(runner.catalog, request)
    if expected:
        params = {**params, "expected_bytes": expected}

    def work(context: JobContext) -> dict[str, Any]:
        record = backups.create(
            runner.settings,
            runner.catalog,
            request,
            progress=context.progress,
            cancel=context.cancel,
        )
        context.job.backup_id = record.id
        return {"backup": record.model_dump(mode="json")}

    return runner.submit(
        "backup",
        work,
        database=request.target.name,
        conn=request.target.conn,
        params=params,
        created_by=request.created_by,
    )


def expected_size(catalog: Catalog, request: backups.BackupRequest) -> int | None:
    """Bytes a backup of ``request`` will likely store: the size of the newest completed
    backup of the same database and tables (None without one)."""
    for record in catalog.list_backups(database=request.target.name, status="completed", limit=20):
        if record.tables == list(request.tables) and record.size_bytes:
            return record.size_bytes
    return None


def start_backup_once(
    runner: JobRunner,
    request: backups.BackupRequest,
    *,
    params: dict[str, Any],
    actor: str,
    idempotency_key: str | None,
) -> str:
    """:func:`start_backup`, unless ``actor`` already started a job with the same
    ``idempotency_key`` within ``api.idempotency_hours``: then that job's id. Two requests
    racing with one key get one job (the catalog's unique key decides). Returns the job id.

    Raises:
        Busy: a backup or restore of the database is running.
    """
    if not idempotency_key:
        return start_backup(runner, request, params=params).id
    now = runtime.now()
    since = now - timedelta(hours=runner.settings.api.idempotency_hours)
    known = rows.idempotent_job(runner.catalog, actor, idempotency_key, since)
    if known:
        return known
    job_id = start_backup(runner, request, params=params).id
    return rows.claim_idempotency_key(runner.catalog, actor, idempotency_key, job_id, now, since)


def start_restore(
    runner: JobRunner,
    plan: restores.RestorePlan,
    *,
    params: dict[str, Any],
    kind: JobKind = "restore",
) -> JobRecord:
    """A restore job (:func:`pgvault.restores.run` of ``plan``, which checks the restore
    policy again); its result holds ``restore`` (the record).

    Raises:
        Busy: a backup or restore of the target database is running.
    """
    request = plan.request

    def work(context: JobContext) -> dict[str, Any]:
        result = restores.run(
            runner.settings, runner.catalog, plan, progress=context.progress, cancel=context.cancel
        )
        context.job.restore_id = result.id
        return {"restore": result.model_dump(mode="json")}

    return runner.submit(
        kind,
        work,
        database=request.target.name,
        conn=request.target.conn,
        backup_id=plan.record.id if plan.record else None,
        params={**params, "mode": request.mode},
        created_by=request.created_by,
    )


def restore_backup(runner: JobRunner, request: restores.RestoreRequest) -> JobRecord:
    """Plan a restore of a catalogued backup, refuse it now if the restore policy does
    (so the caller gets the answer before any job exists), and start it as a job.

    Raises:
        Refused: the policy refuses (nothing touched, no job).
        NotFound, RestoreError, ArchiveError: the backup cannot be restored.
        Busy: a backup or restore of the target runs.
    """
    plan = restores.plan(runner.settings, runner.catalog, request, preview=False)
    restores.check_policy(runner.settings, runner.catalog, plan)
    params = {**target_params(request.target), "backup_id": request.backup_id}
    return start_restore(runner, plan, params=params)


def restore_upload(
    runner: JobRunner,
    request: restores.RestoreRequest,
    upload: IO[bytes],
    *,
    limit: int,
    filename: str | None,
) -> tuple[BackupRecord, JobRecord]:
    """Restore an uploaded dump: the policy is checked and the target must be free before
    the upload is received; the upload is stored and checked as a backup (trigger
    ``upload``), then restored as a job. Returns the new backup and the job.

    Raises:
        Refused: the policy refuses (nothing received).
        Busy: a backup or restore of the target runs (nothing received).
        ArchiveError, TooLarge: the upload is not a whole dump or too large (nothing kept).
    """
    settings, catalog, target = runner.settings, runner.catalog, request.target
    restores.policy.check(
        settings,
        catalog,
        target,
        confirm=request.confirm,
        passkey=request.passkey,
        safety_backup=request.safety_backup,
        client=request.client,
    )
    runner.ensure_free(target.name, target.conn)
    record = backups.receive_upload(
        settings,
        catalog,
        target,
        upload,
        limit=limit,
        decrypt=request.decrypt,
        created_by=request.created_by,
        filename=filename,
    )
    planned = restores.plan(
        settings, catalog, dataclasses.replace(request, backup_id=record.id), preview=False
    )
    params = {**target_params(target), "backup_id": record.id}
    return record, start_restore(runner, planned, params=params, kind="upload-restore")


def start_verify(
    runner: JobRunner,
    backup_id: str,
    *,
    full: bool,
    server_conn: ConnInfo | None,
    decrypt: DecryptHook | None,
    created_by: str | None,
) -> JobRecord:
    """A verification job (``verify.verify``); its result holds ``ok`` and ``detail``."""

    def work(context: JobContext) -> dict[str, Any]:
        context.step("verifying")
        result = verify.verify(
            runner.settings,
            runner.catalog,
            backup_id,
            full=full,
            server_conn=server_conn,
            decrypt=decrypt,
            cancel=context.cancel,
        )
        return {"ok": result.ok, "detail": result.detail, "full": result.full}

    return runner.submit(
        "verify",
        work,
        backup_id=backup_id,
        params={"full": full},
        created_by=created_by,
    )


def target_params(target: DatabaseTarget) -> dict[str, Any]:
    """What a job row shows of its database (no connection secrets)."""
    return {"database": target.name, "server": target.conn.display()}
