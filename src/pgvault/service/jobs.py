"""Background jobs: backups, restores and verifications run in threads, with progress and
cancellation, their rows kept in the catalog (``jobs``).

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
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import IO, Any

from pgvault import backups, restores, runtime
from pgvault.catalog import Catalog, locks
from pgvault.catalog import jobs as rows
from pgvault.catalog.jobs import JobKind, JobRecord
from pgvault.catalog.records import BackupRecord
from pgvault.config.settings import Settings
from pgvault.databases import DatabaseTarget
from pgvault.dumps.layers import DecryptHook
from pgvault.errors import Busy, NotFound, PgvaultError
from pgvault.operations import verify
from pgvault.postgres.conninfo import ConnInfo

log = logging.getLogger(__name__)

SAVE_EVERY = 1.0  # seconds between progress writes to the catalog
EXCLUSIVE_KINDS = ("backup", "restore", "upload-restore", "dump")
ENDED = ("completed", "failed", "cancelled", "interrupted")


@dataclass
class JobContext:
    """Handed to a job's work function: report progress, watch ``cancel``."""

    job: JobRecord
    cancel: threading.Event
    _on_change: Callable[[bool], None]
    _last: tuple[float, int] = field(default=(0.0, 0))

    def progress(self, phase: str, done: int) -> None:
        """``done`` bytes written so far in ``phase`` (a backup's progress callback)."""
        now = time.monotonic()
        then, before = self._last
        if then == 0.0:
            self._last = (now, done)
        elif now - then >= 0.5:
            rate = (done - before) / (now - then)
            self.job.rate = rate if self.job.rate is None else 0.5 * self.job.rate + 0.5 * rate
            self._last = (now, done)
        self.job.phase, self.job.bytes_done = phase, done
        self._on_change(False)

    def step(self, phase: str) -> None:
        """A new phase without a byte count (a restore's progress callback)."""
        self.job.phase = phase
        self._on_change(True)


Work = Callable[[JobContext], dict[str, Any]]


@dataclass
class _Live:
    job: JobRecord
    cancel: threading.Event
    done: threading.Event
    error: BaseException | None = None
    saved_at: float = 0.0
    lock_name: str | None = None


class JobRunner:
    """Runs and tracks the jobs of one service process (thread-safe)."""

    def __init__(self, settings: Settings, catalog: Catalog) -> None:
        self.settings = settings
        self.catalog = catalog
        self._live: dict[str, _Live] = {}
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    def recover(self) -> list[str]:
        """Mark ``interrupted`` the unfinished jobs of dead runners of this host; returns
        their ids."""
        marked = []
        for job in rows.list_jobs(self.catalog, status=("queued", "running"), limit=1000):
            if not runtime.runner_is_dead(job.runner, job.created_at):
                continue
            job.status, job.finished_at = "interrupted", runtime.now()
            job.error = "the pgvault process running this job stopped"
            rows.save_job(self.catalog, job)
            marked.append(job.id)
        return marked

    # --- submitting ---------------------------------------------------------------------

    def submit(
        self,
        kind: JobKind,
        work: Work,
        *,
        database: str | None = None,
        conn: ConnInfo | None = None,
        backup_id: str | None = None,
        params: dict[str, Any] | None = None,
        created_by: str | None = None,
    ) -> JobRecord:
        """Start ``work`` in a thread as a new job; returns its ``queued`` record.

        Args:
            conn: the database worked on; backups and restores of one database exclude
                each other (in this process, and other pgvault processes' backups).

        Raises:
            Busy: a backup or restore of ``database`` is running.
        """
        job = JobRecord(
            id=secrets.token_hex(8),
            kind=kind,
            database=database,
            backup_id=backup_id,
            params=params or {},
            created_by=created_by,
            runner=runtime.runner_id(),
            created_at=runtime.now(),
        )
        live = _Live(job, threading.Event(), threading.Event())
        self.forget_ended()
        with self._lock:
            if kind in EXCLUSIVE_KINDS and conn is not None:
                live.lock_name = locks.database_lock(conn)
                self._refuse_if_busy(database or conn.dbname, live.lock_name)
            self._live[job.id] = live
        rows.save_job(self.catalog, job)
        thread = threading.Thread(
            target=self._run, args=(live, work), name=f"pgvault-job-{job.id}", daemon=True
        )
        self._threads = [t for t in self._threads if t.is_alive()] + [thread]
        thread.start()
        return job.model_copy()

    def ensure_free(self, name: str, conn: ConnInfo) -> None:
        """Check that no backup or restore of the database ``conn`` runs (before slow
        preparations such as receiving an upload; :meth:`submit` checks again).

        Raises:
            Busy: one runs.
        """
        with self._lock:
            self._refuse_if_busy(name, locks.database_lock(conn))

    def _refuse_if_busy(self, name: str, lock_name: str) -> None:
        for other in self._live.values():
            if other.lock_name == lock_name and not other.done.is_set():
                raise Busy(
                    f"a {other.job.kind} of {name} is already running (job {other.job.id}): "
                    "wait for it to end or cancel it"
                )
        with locks.exclusive(self.settings, self.catalog, lock_name) as got:
            if not got:
                raise Busy(f"a backup of {name} is already running: wait for it to end")

    def _run(self, live: _Live, work: Work) -> None:
        job = live.job
        job.status, job.started_at = "running", runtime.now()
        self._save(live, force=True)
        context = JobContext(job, live.cancel, lambda force: self._save(live, force))
        try:
            job.result = work(context)
            job.status = "completed"
        except BaseException as exc:  # noqa: BLE001 - recorded, re-raised by wait()
            live.error = exc
            job.status = "cancelled" if live.cancel.is_set() else "failed"
            job.error = str(exc) or type(exc).__name__
            job.error_kind = type(exc).__name__
            if not isinstance(exc, PgvaultError):
                log.exception("job %s (%s) crashed", job.id, job.kind)
        job.finished_at = runtime.now()
        job.rate = None if job.status != "completed" else job.rate
        try:
            self._save(live, force=True)
        finally:
            live.done.set()
        log.info("job %s (%s) %s", job.id, job.kind, job.status)

    def _save(self, live: _Live, force: bool) -> None:
        now = time.monotonic()
        if not force and now - live.saved_at < SAVE_EVERY:
            return
        live.saved_at = now
        try:
            rows.save_job(self.catalog, live.job.model_copy())
        except PgvaultError as exc:
            log.warning("progress of job %s not saved: %s", live.job.id, exc)

    # --- reading and controlling ----------------------------------------------------------

    def get(self, job_id: str) -> JobRecord:
        """The job's current state (live progress if it runs here).

        Raises:
            NotFound: unknown id.
        """
        live = self._live.get(job_id)
        if live is not None:
            return live.job.model_copy()
        found = rows.get_job(self.catalog, job_id)
        if found is None:
            raise NotFound(f"no job with id {job_id!r}: GET /api/v1/jobs lists them")
        return found

    def list(
        self, *, status: str | None = None, limit: int = 50, offset: int = 0
    ) -> list[JobRecord]:
        """Jobs newest first (live ones with their current progress)."""
        found = rows.list_jobs(
            self.catalog, status=(status,) if status else (), limit=limit, offset=offset
        )
        return [self._live[j.id].job.model_copy() if j.id in self._live else j for j in found]

    def wait(self, job_id: str, timeout: float | None = None) -> JobRecord:
        """Block until the job ends; re-raise its error if it failed.

        Raises:
            NotFound: unknown id.
            PgvaultError: what the job failed with (mapped like a synchronous call).
        """
        live = self._live.get(job_id)
        if live is None:
            return self.get(job_id)
        live.done.wait(timeout)
        if live.error is not None:
            raise live.error
        return live.job.model_copy()

    def cancel(self, job_id: str) -> JobRecord:
        """Ask a running job to stop (it ends ``cancelled``); an ended job is returned as is.

        Raises:
            NotFound: unknown id.
        """
        live = self._live.get(job_id)
        if live is not None and not live.done.is_set():
            live.cancel.set()
            log.info("job %s: cancel requested", job_id)
        return self.get(job_id)

    def shutdown(self, timeout: float = 30.0) -> None:
        """Cancel every running job and wait up to ``timeout`` seconds for them."""
        for live in list(self._live.values()):
            live.cancel.set()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def forget_ended(self, older_than: timedelta = timedelta(hours=1)) -> None:
        """Drop ended jobs from memory (their rows stay in the catalog)."""
        cutoff = runtime.now() - older_than
        with self._lock:
            for job_id, live in list(self._live.items()):
                ended = live.job.finished_at
                if live.done.is_set() and ended is not None and ended < cutoff:
                    del self._live[job_id]


# --- the jobs the service runs ---------------------------------------------------------


def start_backup(
    runner: JobRunner, request: backups.BackupRequest, *, params: dict[str, Any]
) -> JobRecord:
    """A backup job (``backups.create``); its result holds ``backup`` (the record).

    Raises:
        Busy: a backup or restore of the database is running.
    """

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
            runner.settings, runner.catalog, plan, progress=context.step, cancel=context.cancel
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
