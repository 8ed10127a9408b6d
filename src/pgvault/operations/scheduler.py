"""The scheduler: scheduled backups, restore drills, cleanup and freshness checks, run by
``pgvault scheduler`` alone or inside ``pgvault serve`` (APScheduler 3, background threads).

Exactly once, across processes. Each backup run belongs to a *slot*: the schedule's newest
fire time at or before the moment it runs (UTC). A run takes the lock
``scheduled:<database>:<schedule>`` (:func:`pgvault.catalog.locks.exclusive`: a PostgreSQL advisory
lock when several instances share a PostgreSQL catalog), then looks in the catalog for a
backup labelled ``schedule=<name>, scheduled_for=<slot>``; only if there is none does it run
the backup, whose row (carrying those labels) is written before the lock is released. So
two instances firing for the same slot run one backup: the second either finds the lock
held or finds the row. A run failing before pg_dump started (server unreachable) is recorded
as a ``failed`` row too, so it is neither retried by another instance nor invisible to
health checks.

Overlaps. A run whose previous one (same schedule) still holds the lock, or which finds
another backup of the database running (:class:`~pgvault.errors.Busy`), is skipped and
logged. Missed runs: APScheduler runs a late job within ``scheduler.misfire_grace_seconds``
and coalesces several missed ones into one; at start, the newest fire time within the grace
that has no row in the catalog (the process was down) is run once.

Shutdown. :meth:`Scheduler.shutdown` stops starting runs, lets running ones finish within
the grace period, then sets the cancel event: ``backups.create`` stops writing, aborts the
upload, removes what was written and marks the row ``interrupted``.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from types import FrameType

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger

from pgvault import backups, databases, notify, runtime
from pgvault.backups import BackupRequest
from pgvault.catalog import Catalog, locks
from pgvault.catalog.records import BackupRecord
from pgvault.config.settings import Settings
from pgvault.dumps.encryption import decryptor_from
from pgvault.errors import BackupError, Busy, Cancelled, PgvaultError
from pgvault.files import notices
from pgvault.operations import file_retention as files_retention
from pgvault.operations import file_schedules as files_schedules
from pgvault.operations import monitoring, prune, verify
from pgvault.operations import physical_schedules as scheduled
from pgvault.operations.retention import SCHEDULE_LABEL
from pgvault.operations.schedules import Schedule, configured, latest_fire_time
from pgvault.postgres import conninfo

log = logging.getLogger(__name__)

SLOT_LABEL = "scheduled_for"
"""Label carrying the slot (ISO UTC fire time) a scheduled backup ran for."""
SLOT_LOOKBACK_ROWS = 500  # newest rows of a database searched for a slot's backup
STOP_AFTER_CANCEL_SECONDS = 60.0  # how long shutdown waits for cancelled runs to end


def slot_text(slot: datetime) -> str:
    """A slot as its label value: ISO-8601 UTC to the second."""
    return slot.astimezone(UTC).isoformat(timespec="seconds")


class Scheduler:
    """A running scheduler; build it with :func:`start`.

    Attributes:
        cancel: set at the end of the shutdown grace period; running backups and drills stop.
    """

    def __init__(self, settings: Settings, catalog: Catalog) -> None:
        self.settings = settings
        self.catalog = catalog
        self.cancel = threading.Event()
        self.schedules = configured(settings)
        self._active = 0
        self._idle = threading.Condition()
        self._stopping = False
        self._health: dict[str, monitoring.Status] = {}
        self._stop_streams = threading.Event()
        self._streams: list[threading.Thread] = []
        options = settings.scheduler
        self._aps = BackgroundScheduler(
            timezone=UTC,
            executors={"default": ThreadPoolExecutor(options.workers)},
            job_defaults={
                "coalesce": True,
                "misfire_grace_time": options.misfire_grace_seconds,
                "max_instances": 1,
            },
        )

    # --- life cycle ----------------------------------------------------------------------

    def start(self) -> None:
        """Add every enabled job, start the threads, and catch up on missed backup runs."""
        for s in self.schedules:
            if not s.enabled:
                log.info("schedule %s is disabled", s.job_id)
                continue
            self._aps.add_job(self._runner(s), s.trigger, id=s.job_id, name=s.job_id)
        self._aps.add_job(
            self.check_freshness,
            IntervalTrigger(seconds=self.settings.scheduler.freshness_check_seconds),
            id="freshness",
            name="freshness",
        )
        self._aps.start()
        self._streams = scheduled.start_streams(self.settings, self.catalog, self._stop_streams)
        monitoring.set_scheduler_running(True)
        now = datetime.now(UTC)
        for s in self.schedules:
            if s.enabled and s.kind in ("backup", "files"):
                missed = latest_fire_time(
                    s.trigger, now, self.settings.scheduler.misfire_grace_seconds
                )
                if missed is not None and not self._slot_taken(s, slot_text(missed)):
                    log.info("catching up the missed run %s of %s", slot_text(missed), s.job_id)
                    job = self.run_backup if s.kind == "backup" else self.run_files
                    self._aps.add_job(job, args=[s, missed], id=f"catchup:{s.job_id}")
        log.info("scheduler started with %d job(s)", len(self._aps.get_jobs()))

    @property
    def running(self) -> bool:
        """True until :meth:`shutdown` was called."""
        return not self._stopping

    def shutdown(self, grace_seconds: float | None = None) -> None:
        """Stop: no new runs; running ones get ``grace_seconds`` (default
        ``scheduler.shutdown_grace_seconds``) to finish, then are cancelled and awaited."""
        grace = (
            self.settings.scheduler.shutdown_grace_seconds
            if grace_seconds is None
            else (grace_seconds)
        )
        self._stopping = True
        self._stop_streams.set()
        if self._aps.running:
            self._aps.shutdown(wait=False)
        if not self._wait_idle(grace):
            log.warning("stopping %d running job(s) after the %.0f s grace", self._active, grace)
            self.cancel.set()
            if not self._wait_idle(STOP_AFTER_CANCEL_SECONDS):
                log.error("%d job(s) still running after being cancelled", self._active)
        for thread in self._streams:
            thread.join(STOP_AFTER_CANCEL_SECONDS)
        monitoring.set_scheduler_running(False)
        log.info("scheduler stopped")

    def _wait_idle(self, timeout: float) -> bool:
        with self._idle:
            return self._idle.wait_for(lambda: self._active == 0, timeout)

    @contextmanager
    def _tracked(self) -> Iterator[bool]:
        """Count a run as active; yields False (run nothing) once stopping."""
        with self._idle:
            if self._stopping:
                yield False
                return
            self._active += 1
        try:
            yield True
        finally:
            with self._idle:
                self._active -= 1
                self._idle.notify_all()

    def _runner(self, s: Schedule) -> Callable[[], object]:
        if s.kind == "backup":
            return lambda: self.run_backup(s)
        if s.kind == "verify":
            return lambda: self.run_verify(s)
        if s.kind == "files":
            return lambda: self.run_files(s)
        return lambda: self.run_prune(None)

    # --- jobs ----------------------------------------------------------------------------

    def _slot_row(self, s: Schedule, slot: str) -> BackupRecord | None:
        rows = self.catalog.list_backups(
            database=s.database, include_deleted=True, limit=SLOT_LOOKBACK_ROWS
        )
        for row in rows:
            if row.labels.get(SCHEDULE_LABEL) == s.name and row.labels.get(SLOT_LABEL) == slot:
                return row
        return None

    def _slot_taken(self, s: Schedule, slot: str) -> bool:
        if s.kind == "files":
            assert s.database is not None
            labels = {SCHEDULE_LABEL: s.name, SLOT_LABEL: slot}
            return files_schedules.slot_snapshot(self.catalog, s.database, labels) is not None
        return self._slot_row(s, slot) is not None

    def run_files(self, s: Schedule, slot: datetime | None = None) -> object:
        """Run file set schedule ``s``'s snapshot for ``slot`` (default: its newest fire
        time) unless another run has it, then the set's retention. Never raises."""
        assert s.database is not None
        now = datetime.now(UTC)
        grace = self.settings.scheduler.misfire_grace_seconds
        label = slot_text(slot or latest_fire_time(s.trigger, now, grace) or now)
        with self._tracked() as go:
            if not go:
                return None
            with locks.exclusive(self.settings, self.catalog, f"scheduled:{s.job_id}") as got:
                if not got or self._slot_taken(s, label):
                    log.info("%s for %s skipped: running or done elsewhere", s.job_id, label)
                    return None
                labels = {SCHEDULE_LABEL: s.name, SLOT_LABEL: label}
                record = files_schedules.run(
                    self.settings, self.catalog, s.database, labels, self.cancel
                )
        if record is not None:
            files_retention.apply(self.settings, self.catalog, file_set=s.database)
        return record

    def run_backup(self, s: Schedule, slot: datetime | None = None) -> BackupRecord | None:
        """Run schedule ``s``'s backup for ``slot`` (default: its newest fire time) unless
        another run has it; then apply retention. Never raises: failures are recorded,
        logged and notified. Returns the completed record, else None."""
        assert s.database is not None
        now = datetime.now(UTC)
        grace = self.settings.scheduler.misfire_grace_seconds
        chosen = slot or latest_fire_time(s.trigger, now, grace) or now
        label = slot_text(chosen)
        with self._tracked() as go:
            if not go:
                return None
            with locks.exclusive(self.settings, self.catalog, f"scheduled:{s.job_id}") as got:
                if not got:
                    log.warning(
                        "%s for %s skipped: a run of it is still going (here or on another "
                        "instance)",
                        s.job_id,
                        label,
                    )
                    return None
                if self._physical(s):
                    scheduled.run_backup(
                        self.settings, self.catalog, s.database, s.name, label, self.cancel
                    )
                    return None
                if self._slot_row(s, label) is not None:
                    log.info("%s for %s already ran (another instance)", s.job_id, label)
                    return None
                record = self._backup(s, label)
        if record is not None:
            self.run_prune(s.database)
        return record

    def _physical(self, s: Schedule) -> bool:
        assert s.database is not None
        return self.settings.databases[s.database].schedules[s.name].physical

    def _backup(self, s: Schedule, label: str) -> BackupRecord | None:
        assert s.database is not None
        labels = {SCHEDULE_LABEL: s.name, SLOT_LABEL: label}
        try:
            target = databases.from_config(self.settings, s.database)
            options = self.settings.databases[s.database].schedules[s.name]
            request = BackupRequest(
                target=target,
                dump_format=options.format,
                compression=options.compression,
                level=options.level,
                tables=options.tables,
                exclude_tables=options.exclude_tables,
                schemas=options.schemas,
                storage=options.storage,
                labels=labels,
                trigger="scheduled",
                created_by="scheduler",
            )
            log.info("%s: backup for %s starting", s.job_id, label)
            record = backups.create(self.settings, self.catalog, request, cancel=self.cancel)
        except Busy as exc:
            log.warning("%s for %s skipped (overlap): %s", s.job_id, label, exc)
            return None
        except Cancelled:
            log.warning("%s for %s interrupted by the shutdown", s.job_id, label)
            return None
        except BackupError as exc:
            notify.notify(
                self.settings,
                "backup_failed",
                s.database,
                backup=self._slot_row(s, label),
                error=str(exc),
            )
            return None
        except PgvaultError as exc:
            failed = self._record_failure(s, labels, exc)
            notify.notify(self.settings, "backup_failed", s.database, backup=failed, error=str(exc))
            return None
        except Exception as exc:
            log.exception("%s for %s crashed", s.job_id, label)
            notify.notify(self.settings, "backup_failed", s.database, error=repr(exc))
            return None
        notify.notify(self.settings, "backup_succeeded", s.database, backup=record)
        return record

    def _record_failure(
        self, s: Schedule, labels: dict[str, str], exc: PgvaultError
    ) -> BackupRecord | None:
        """A ``failed`` row for a run that failed before backups.create recorded one."""
        assert s.database is not None
        now = datetime.now(UTC)
        try:
            conn = databases.from_config(self.settings, s.database).conn
            dbname, server = conn.dbname, conn.server_key()
        except PgvaultError:
            dbname, server = s.database, "?"
        db = self.settings.databases.get(s.database)
        record = BackupRecord(
            id=runtime.new_id(now),
            database=s.database,
            dbname=dbname,
            server=server,
            environment=db.environment if db else None,
            trigger="scheduled",
            status="failed",
            labels=labels,
            storage="",
            storage_key="",
            started_at=now,
            finished_at=now,
            duration_seconds=0.0,
            error=str(exc),
            created_by="scheduler",
            runner=runtime.runner_id(),
        )
        log.error("%s failed before it started: %s", s.job_id, exc)
        try:
            self.catalog.add_backup(record)
        except PgvaultError as err:
            log.error("could not record the failure of %s: %s", s.job_id, err)
            return None
        return record

    def run_verify(self, s: Schedule) -> verify.VerifyResult | None:
        """The restore drill: full verification of the newest completed backup of
        ``s.database`` (restore into a scratch database, compare row counts, drop it).
        Never raises; a failure is notified (``verify_failed``)."""
        assert s.database is not None
        with self._tracked() as go:
            if not go:
                return None
            with locks.exclusive(self.settings, self.catalog, f"verify:{s.database}") as got:
                if not got:
                    log.info("restore drill of %s already running elsewhere", s.database)
                    return None
                return self._verify(s.database)

    def _verify(self, database: str) -> verify.VerifyResult | None:
        newest = self.catalog.list_backups(database=database, status="completed", limit=1)
        if not newest:
            notify.notify(
                self.settings, "verify_failed", database, error="no completed backup to verify"
            )
            return None
        record = newest[0]
        try:
            drill = self.settings.databases[database].verify
            if drill is not None and drill.server_url:
                server = conninfo.parse(drill.server_url)
            else:
                server = databases.from_config(self.settings, database).conn
            result = verify.verify(
                self.settings,
                self.catalog,
                record.id,
                full=True,
                server_conn=server,
                decrypt=decryptor_from(self.settings.age_identity_file),
                cancel=self.cancel,
            )
        except PgvaultError as exc:
            log.error("restore drill of %s (backup %s) failed: %s", database, record.id, exc)
            notify.notify(self.settings, "verify_failed", database, backup=record, error=str(exc))
            return None
        log.info("restore drill of %s: backup %s ok (%s)", database, record.id, result.detail)
        return result

    def run_prune(self, database: str | None = None) -> list[prune.PruneItem]:
        """Apply retention to ``database`` (None: every one). Never raises."""
        scheduled.prune(self.settings, self.catalog, database)
        try:
            items = prune.apply(self.settings, self.catalog, database=database).items
            if database is None:
                files_retention.apply(self.settings, self.catalog)
        except PgvaultError as exc:
            log.error("retention of %s failed: %s", database or "every database", exc)
            return []
        gone = [i for i in items if i.deleted]
        if gone:
            log.info("retention deleted %d backup(s)", len(gone))
        return items

    def check_freshness(self) -> None:
        """Notify ``freshness_lost`` for each database whose health left ``ok`` since the
        last check (or is not ok at the first check of this process). Never raises."""
        try:
            report = monitoring.health(self.settings, self.catalog)
        except PgvaultError as exc:
            log.error("freshness check failed: %s", exc)
            return
        for fs in report.file_sets:
            before = self._health.get(f"files:{fs.file_set}")
            self._health[f"files:{fs.file_set}"] = fs.status
            if fs.status != "ok" and before in (None, "ok"):
                notices.tell(
                    self.settings, "freshness_lost", fs.file_set, detail="; ".join(fs.reasons)
                )
        for db in report.databases:
            before = self._health.get(db.database)
            self._health[db.database] = db.status
            if db.status != "ok" and before in (None, "ok"):
                notify.notify(
                    self.settings,
                    "freshness_lost",
                    db.database,
                    detail="; ".join(db.reasons),
                )


def start(settings: Settings, catalog: Catalog) -> Scheduler:
    """Start the scheduler's threads for ``settings``'s jobs and return it.

    Raises:
        ConfigError: a schedule's cron expression or time zone is invalid.
    """
    scheduler = Scheduler(settings, catalog)
    scheduler.start()
    return scheduler


def run_forever(
    settings: Settings, catalog: Catalog, *, stop: threading.Event | None = None
) -> None:
    """Run the scheduler until SIGTERM/SIGINT (or ``stop`` is set), then shut it down with
    ``scheduler.shutdown_grace_seconds`` of grace. Call from the main thread.

    Raises:
        ConfigError: a schedule is invalid.
    """
    done = stop or threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("signal %d received: stopping", signum)
        done.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    scheduler = start(settings, catalog)
    try:
        while not done.wait(0.5):
            pass
    finally:
        scheduler.shutdown()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
