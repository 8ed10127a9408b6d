"""The job runner: work run in threads with progress and cancellation, its rows kept in the
catalog (``jobs``); :mod:`pgvault.service.jobs` says which work (backups, restores, ...).

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

import logging
import secrets
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from pgvault import runtime
from pgvault.catalog import Catalog, locks
from pgvault.catalog import jobs as rows
from pgvault.catalog.jobs import JobKind, JobProgress, JobRecord
from pgvault.config.settings import Settings
from pgvault.errors import Busy, NotFound, PgvaultError
from pgvault.postgres.conninfo import ConnInfo
from pgvault.progress import Meter, ProgressEvent

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
    _meter: Meter = field(default_factory=Meter)

    def progress(self, event: ProgressEvent) -> None:
        """The domain's progress callback: phase, done of total, rate and time left."""
        job = self.job
        if event.unit == "steps":
            job.phase = event.detail or event.phase
            job.progress = JobProgress(phase=event.phase, unit="steps", detail=event.detail)
            self._on_change(True)
            return
        meter = self._meter
        meter.update(event)
        job.phase = event.phase
        if event.unit == "bytes":
            job.bytes_done, job.rate = event.done, meter.rate
        detail = job.progress.detail if job.progress is not None else None
        job.progress = JobProgress(
            phase=event.phase,
            unit=event.unit,
            done=event.done,
            total=event.total,
            percent=None if event.percent is None else round(event.percent, 1),
            rate=meter.rate,
            eta_seconds=meter.eta(event),
            detail=detail,
        )
        self._on_change(False)

    def step(self, phase: str) -> None:
        """A new phase without numbers."""
        self.progress(ProgressEvent(phase="step", unit="steps", detail=phase))


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


async def watch(runner: JobRunner, first: JobRecord, every: float) -> AsyncIterator[JobRecord]:
    """Yield ``first``, then the job each time it changed, up to and with its ended state;
    it is looked at every ``every`` seconds in a worker thread (the server-sent events of the
    API and the dashboard). Raises what :meth:`JobRunner.get` raises."""
    import anyio
    import anyio.to_thread

    job, last = first, ""
    while True:
        text = job.model_dump_json()
        if text != last:
            yield job
            last = text
            if job.status in ENDED:
                return
        await anyio.sleep(every)
        job = await anyio.to_thread.run_sync(runner.get, first.id)
