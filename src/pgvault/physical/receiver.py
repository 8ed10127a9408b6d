"""``pgvault wal stream``: pg_receivewal supervised, its finished segments archived.

::

    lock wal-stream:<database>  (never two streams of one database)
    -> archive what a previous run left in the spool; stop a stale pg_receivewal of it
    -> pg_receivewal --create-slot --if-not-exists
    -> pg_receivewal -D <home>/wal-spool/<database> --slot S --no-loop
       every poll: each finished segment / history file in the spool is compressed,
       [encrypted], uploaded, checked, recorded, and only then removed from the spool
    -> pg_receivewal died: archive what it finished, wait (1, 2, 4 ... 60 s), start again
    -> the slot lost WAL (``wal_status = lost``, "has already been removed"): notify
       ``wal_gap``, recreate the slot, carry on; the gap stays visible in health

pg_receivewal itself resumes where the spool ends (its ``.partial`` file) or, with an empty
spool, at the slot's ``restart_lsn`` (PostgreSQL 15+), so a kill at any point loses nothing
the slot still holds: the spool is on disk and drained first at the next start.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import subprocess
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import psutil

from pgvault import notify
from pgvault.catalog import Catalog, locks
from pgvault.catalog import physical as rows
from pgvault.catalog.physical import StreamStatus, WalStreamRecord
from pgvault.config.settings import Settings
from pgvault.databases import DatabaseTarget
from pgvault.errors import Busy, ConfigError, PgvaultError
from pgvault.physical import archive as wal_archive
from pgvault.physical import serverinfo, walnames
from pgvault.postgres import runner, tools
from pgvault.postgres.physical_commands import create_slot_command, pg_receivewal_command
from pgvault.postgres.runner import Child

log = logging.getLogger(__name__)

BACKOFF_SECONDS = (1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 60.0)
STABLE_SECONDS = 60.0  # a pg_receivewal that ran this long resets the backoff
PID_FILE = "pg_receivewal.pid"
LOST_WAL = ("has already been removed", "wal_status = lost", "cannot be used", "invalidated")


def slot_name(target: DatabaseTarget) -> str:
    """The replication slot: ``replication_slot`` or ``pgvault_<name>`` (letters, digits and
    ``_`` only, as PostgreSQL requires, at most 63 bytes)."""
    if target.settings.replication_slot:
        return target.settings.replication_slot
    return ("pgvault_" + re.sub(r"[^a-z0-9_]", "_", target.name.lower()))[:63]


def spool_dir(settings: Settings, target: DatabaseTarget) -> Path:
    """``<home>/wal-spool/<database>``, created with mode 0700."""
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", target.name)
    path = Path(settings.home).absolute() / "wal-spool" / safe
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.chmod(0o700)
    return path


def require_pitr(target: DatabaseTarget) -> None:
    """Raise unless the database is configured with ``pitr = true``.

    Raises:
        ConfigError: pitr is off (or the database is not in the config).
    """
    if not target.settings.pitr:
        raise ConfigError(
            f"database {target.name!r} does not have pitr = true in the config: set it under "
            f"[databases.{target.name}] to stream its WAL"
        )


def ready_files(spool: Path) -> list[Path]:
    """The finished WAL files in the spool, in WAL order (history files of a timeline come
    before its segments since ``.`` sorts before digits)."""
    names = [
        p
        for p in spool.iterdir()
        if p.is_file() and (walnames.is_segment(p.name) or walnames.is_history(p.name))
    ]
    return sorted(names, key=lambda p: p.name)


@dataclass
class StreamOptions:
    """Timing of the supervisor, in seconds."""

    poll_seconds: float = 0.2  # a listdir of the spool; also bounds the archive's lag
    heartbeat_seconds: float = 10.0
    backoff: Sequence[float] = BACKOFF_SECONDS


class WalStream:
    """Streams one database's WAL into its archive until ``cancel`` is set."""

    def __init__(
        self,
        settings: Settings,
        catalog: Catalog,
        target: DatabaseTarget,
        *,
        cancel: threading.Event | None = None,
        options: StreamOptions | None = None,
    ) -> None:
        require_pitr(target)
        self.settings = settings
        self.catalog = catalog
        self.target = target
        self.cancel = cancel or threading.Event()
        self.options = options or StreamOptions()
        self.slot = slot_name(target)
        self.spool = spool_dir(settings, target)
        self.state = WalStreamRecord(
            database=target.name,
            slot=self.slot,
            status="stopped",
            runner=f"{socket.gethostname()}:{os.getpid()}",
        )
        self._last_beat = 0.0

    def run(self) -> None:
        """Stream until cancelled.

        Raises:
            Busy: another process streams this database.
            ConnectionFailed, ToolError: the first connection or tool lookup failed.
        """
        lock = f"wal-stream:{self.target.name}"
        with locks.exclusive(self.settings, self.catalog, lock) as got:
            if not got:
                raise Busy(f"WAL of {self.target.name} is already streamed by another pgvault")
            identity = serverinfo.identify(self.target.conn)
            self.archive = wal_archive.open_archive(
                self.settings, self.target, identity.system_identifier, identity.segment_size
            )
            self.state.system_identifier = identity.system_identifier
            self.state.started_at = datetime.now(UTC)
            self.tool = tools.choose_matching(
                "pg_receivewal", identity.major, self.settings.bin_dir
            )
            stop_stale_receiver(self.spool)
            self.drain()
            try:
                self._supervise()
            finally:
                self.drain()
                self._save("stopped")

    def _supervise(self) -> None:
        attempt = 0
        while not self.cancel.is_set():
            started = time.monotonic()
            try:
                self._ensure_slot()
                message = self._run_receiver()
            except PgvaultError as exc:
                message = str(exc)
            if self.cancel.is_set():
                return
            if time.monotonic() - started > STABLE_SECONDS:
                attempt = 0
            delay = self.options.backoff[min(attempt, len(self.options.backoff) - 1)]
            attempt += 1
            self.state.restarts += 1
            self.state.last_error = message
            log.warning(
                "pg_receivewal for %s stopped (%s); restarting in %.0f s",
                self.target.name,
                message,
                delay,
            )
            if any(mark in message for mark in LOST_WAL):
                self._slot_lost(message)
            self._save("retrying", force=True)
            self.cancel.wait(delay)

    def _ensure_slot(self) -> None:
        state = serverinfo.slot_state(self.target.conn, self.slot)
        if state is not None and state.wal_status == "lost":
            self._slot_lost(f"replication slot {self.slot} has wal_status = lost")
            state = None
        if state is None:
            argv = create_slot_command(self.tool.path, self.target.conn.dsn(), slot=self.slot)
            runner.run(argv, env=self.target.conn.child_env(), timeout=60)
            log.info("created replication slot %s for %s", self.slot, self.target.name)

    def _run_receiver(self) -> str:
        argv = pg_receivewal_command(
            self.tool.path, self.target.conn.dsn(), self.spool, slot=self.slot
        )
        with Child(argv, env=self.target.conn.child_env(), stdout=subprocess.DEVNULL) as child:
            (self.spool / PID_FILE).write_text(f"{child.proc.pid}\n")
            self._save("streaming", force=True)
            while child.proc.poll() is None:
                if self.cancel.wait(self.options.poll_seconds):
                    child.kill()
                    break
                self.drain()
                self._save("streaming")
            child.wait()
            (self.spool / PID_FILE).unlink(missing_ok=True)
            return child.message()

    def drain(self) -> int:
        """Archive every finished WAL file in the spool, removing each once recorded;
        returns how many were archived. A file that fails stays for the next round."""
        done = 0
        for path in ready_files(self.spool):
            try:
                record, _stored = wal_archive.archive_file(
                    self.catalog, self.archive, path, source="stream"
                )
            except PgvaultError as exc:
                log.error("archiving %s failed (kept in the spool): %s", path.name, exc)
                self.state.last_error = str(exc)
                return done
            path.unlink()
            done += 1
            if record.segment_number is not None:
                self._check_continuity(record.timeline, record.segment_number, path.name)
        return done

    def _check_continuity(self, timeline: int, number: int, name: str) -> None:
        previous = walnames.Segment(timeline, number - 1).name(self.archive.segment_size)
        if number == 0 or rows.get_segment(self.catalog, self.archive.system_identifier, previous):
            return
        older = [
            r
            for r in rows.segments(
                self.catalog, system_identifier=self.archive.system_identifier, history=False
            )
            if r.timeline == timeline and (r.segment_number or 0) < number
        ]
        if older:
            detail = f"WAL before {name} is missing from the archive (after {older[-1].name})"
            log.error("%s: %s", self.target.name, detail)
            notify.notify(self.settings, "wal_gap", self.target.name, detail=detail)

    def _slot_lost(self, message: str) -> None:
        detail = (
            f"replication slot {self.slot} lost WAL the archive did not have ({message}): "
            "the archive has a gap; take a new base backup"
        )
        log.error("%s: %s", self.target.name, detail)
        notify.notify(self.settings, "wal_gap", self.target.name, detail=detail)
        for partial in self.spool.glob("*.partial"):
            partial.unlink()
        try:
            serverinfo.drop_slot(self.target.conn, self.slot)
        except PgvaultError as exc:
            log.warning("could not drop replication slot %s: %s", self.slot, exc)

    def _save(self, status: StreamStatus, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and status == self.state.status:
            if now - self._last_beat < self.options.heartbeat_seconds:
                return
        self._last_beat = now
        self.state.status = status
        self.state.heartbeat_at = datetime.now(UTC)
        try:
            if status == "streaming":
                self._observe_server()
            rows.save_stream(self.catalog, self.state)
        except PgvaultError as exc:
            log.warning("could not record the stream state of %s: %s", self.target.name, exc)

    def _observe_server(self) -> None:
        """Record the server's WAL position and the WAL its slot retains (for health)."""
        slot = serverinfo.slot_state(self.target.conn, self.slot)
        self.state.slot_retained_bytes = None if slot is None else slot.retained_bytes
        self.state.server_lsn = serverinfo.identify(self.target.conn).current_lsn


def stop_stale_receiver(spool: Path) -> bool:
    """Stop a pg_receivewal left running on ``spool`` by a pgvault that died (its pid is in
    ``pg_receivewal.pid`` and its command line names the spool); True if one was stopped."""
    pid_file = spool / PID_FILE
    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return False
    try:
        proc = psutil.Process(pid)
        if proc.name() != "pg_receivewal" or f"--directory={spool}" not in proc.cmdline():
            return False
        proc.terminate()
        try:
            proc.wait(10)
        except psutil.TimeoutExpired:
            proc.kill()
    except psutil.Error:
        return False
    finally:
        pid_file.unlink(missing_ok=True)
    log.warning("stopped a pg_receivewal (pid %d) left running on %s", pid, spool)
    return True


def stream_all(
    settings: Settings, catalog: Catalog, cancel: threading.Event
) -> list[threading.Thread]:
    """Start one :class:`WalStream` thread per database with ``pitr = true`` (``pgvault serve``
    and ``pgvault scheduler``); each stops when ``cancel`` is set."""
    from pgvault import databases

    threads = []
    for name, db in sorted(settings.databases.items()):
        if not db.pitr:
            continue
        target = databases.from_config(settings, name)

        def work(target: DatabaseTarget = target) -> None:
            while not cancel.is_set():
                try:
                    WalStream(settings, catalog, target, cancel=cancel).run()
                except PgvaultError as exc:
                    log.error("WAL stream of %s: %s; retrying in 60 s", target.name, exc)
                    cancel.wait(60)

        thread = threading.Thread(target=work, name=f"wal-stream-{name}", daemon=True)
        thread.start()
        threads.append(thread)
    return threads
