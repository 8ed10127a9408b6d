"""Point-in-time recovery into a new data directory (``restore --physical``).

:func:`plan` picks, from the catalog alone, the newest base backup (with its incremental
chain) that ended before the recovery target. :func:`run` then::

    DIR (0700, empty) <- unpack / pg_combinebackup the chain (stored sha256 checked)
    -> postgresql.auto.conf: restore_command (the WAL server's script),
       recovery_target_time | _lsn | _name, recovery_target_action = 'promote',
       archive_mode = off (a copy must never archive into its source's archive);
       recovery.signal
    -> the WAL server fetches segments ahead, in parallel, answering restore_command
    -> pg_ctl start (PostgreSQL of the backup's major) on port N; wait for the promotion
    -> reached time and LSN from recovery's log lines

A segment the archive should have but cannot give (deleted, corrupt, a gap) ends with one
error naming it and the latest time that can still be reached (what recovery logged as its
"last completed transaction"); the half-recovered directory is removed.
"""

from __future__ import annotations

import logging
import shutil
import socket
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pgvault import runtime
from pgvault.catalog import Catalog
from pgvault.catalog import physical as rows
from pgvault.catalog.physical import PhysicalBackupRecord
from pgvault.config.settings import Settings
from pgvault.databases import DatabaseTarget
from pgvault.dumps.layers import DecryptHook
from pgvault.errors import ConfigError, RestoreError
from pgvault.physical import cluster, walnames
from pgvault.physical.basebackup import needed_segments
from pgvault.physical.cluster import RecoveryLog, Server
from pgvault.physical.prefetch import WalServer
from pgvault.physical.unpack import prepare_directory, restore_chain

log = logging.getLogger(__name__)

TargetKind = Literal["time", "lsn", "name", "latest", "immediate"]
MARK = "# pgvault point-in-time restore"
WAL_SPOOL = "pgvault_restore_wal"


@dataclass(frozen=True)
class RecoveryTarget:
    """Where recovery stops (PostgreSQL docs, "Recovery Target")."""

    kind: TargetKind
    time: datetime | None = None
    lsn: int | None = None
    name: str | None = None

    def describe(self) -> str:
        """``time 2026-12-01 14:32:05+00:00``, ``lsn 0/3000028``, ``name before-upgrade``."""
        if self.kind == "time" and self.time is not None:
            return f"time {self.time.isoformat(sep=' ')}"
        if self.kind == "lsn" and self.lsn is not None:
            return f"lsn {walnames.format_lsn(self.lsn)}"
        if self.kind == "name":
            return f"restore point {self.name!r}"
        if self.kind == "immediate":
            return "the end of the base backup (immediate)"
        return "the end of the archive (latest)"

    def settings(self) -> dict[str, str]:
        """The ``recovery_target_*`` settings (none for ``latest``)."""
        if self.kind == "time" and self.time is not None:
            return {"recovery_target_time": self.time.isoformat(sep=" ")}
        if self.kind == "lsn" and self.lsn is not None:
            return {"recovery_target_lsn": walnames.format_lsn(self.lsn)}
        if self.kind == "name" and self.name is not None:
            return {"recovery_target_name": self.name}
        if self.kind == "immediate":
            return {"recovery_target": "immediate"}
        return {}


def parse_target(
    time: str | None = None,
    lsn: str | None = None,
    name: str | None = None,
    latest: bool = False,
) -> RecoveryTarget:
    """Exactly one of ``--target-time``, ``--target-lsn``, ``--target-name``, ``latest``.

    Raises:
        ConfigError: none or several given, a time without a zone, a bad LSN or name.
    """
    given = [v for v in (time, lsn, name) if v is not None] + (["latest"] if latest else [])
    if len(given) != 1:
        raise ConfigError(
            "give exactly one of --target-time, --target-lsn, --target-name or --latest"
        )
    if time is not None:
        try:
            moment = datetime.fromisoformat(time.strip())
        except ValueError as exc:
            raise ConfigError(
                f"--target-time {time!r} is not a time: use '2026-12-01 14:32:05+00'"
            ) from exc
        if moment.tzinfo is None:
            raise ConfigError(f"--target-time {time!r} has no time zone: add one, e.g. +00")
        return RecoveryTarget("time", time=moment)
    if lsn is not None:
        return RecoveryTarget("lsn", lsn=walnames.parse_lsn(lsn))
    if name is not None:
        if not name or len(name.encode()) > 63 or "\n" in name:
            raise ConfigError("--target-name must be a restore point name of 1 to 63 bytes")
        return RecoveryTarget("name", name=name)
    return RecoveryTarget("latest")


@dataclass(frozen=True)
class RecoveryRequest:
    """One point-in-time recovery of ``target``'s server into ``into``.

    Attributes:
        port: TCP port of the recovered server (None: a free one).
        keep_running: leave the server running after recovery (``--into``); False stops it.
        socket_dir: its unix socket directory (None: ``into`` when the path is short
            enough, else TCP only).
        local_trust: replace ``pg_hba.conf`` with ``local all all trust`` (the private
            temporary cluster of ``--to URL``, reachable only through ``socket_dir``).
        timeout: seconds recovery may take (None: no limit).
        backup_id: recover this base backup (its chain) instead of choosing by target.
    """

    target: DatabaseTarget
    recovery_target: RecoveryTarget
    into: Path
    port: int | None = None
    decrypt: DecryptHook | None = None
    keep_running: bool = True
    socket_dir: Path | None = None
    local_trust: bool = False
    listen: bool = True
    timeout: float | None = None
    backup_id: str | None = None


@dataclass
class RecoveryPlan:
    """What :func:`run` will do; ``chain`` is oldest (the full backup) first."""

    database: str
    system_identifier: str
    chain: list[PhysicalBackupRecord]
    target: RecoveryTarget
    into: Path
    major: int
    segment_size: int
    first_segment: str
    archived_segments: int


@dataclass
class RecoveryResult:
    """Where recovery got to (times UTC-aware; the LSN as ``X/Y``)."""

    reached_time: datetime | None
    reached_lsn: str | None
    data_directory: str
    port: int
    backup_id: str
    target: str
    running: bool = True
    details: dict[str, str] = field(default_factory=dict)


def _chain(catalog: Catalog, newest: PhysicalBackupRecord) -> list[PhysicalBackupRecord]:
    chain = [newest]
    while chain[-1].parent_id is not None:
        parent = rows.get_backup(catalog, chain[-1].parent_id)
        if parent.status != "completed":
            raise RestoreError(
                f"base backup {newest.id} is incremental on {parent.id}, which is "
                f"{parent.status}: choose an earlier target"
            )
        chain.append(parent)
    return list(reversed(chain))


def _choose(catalog: Catalog, database: str, target: RecoveryTarget) -> PhysicalBackupRecord:
    done = rows.list_backups(catalog, database=database, status="completed")
    if not done:
        raise RestoreError(
            f"no completed physical backup of {database}: run 'pgvault backup --physical "
            f"--database {database}' first"
        )
    fitting = done
    if target.kind == "time":
        assert target.time is not None
        fitting = [b for b in done if b.finished_at is not None and b.finished_at <= target.time]
    elif target.kind == "lsn":
        fitting = [b for b in done if (b.stop_lsn or 0) <= (target.lsn or 0)]
    elif target.kind == "name":
        marks = rows.restore_points_of(catalog, database, target.name)
        if marks:
            mark = marks[0]
            fitting = [
                b
                for b in done
                if b.system_identifier == mark.system_identifier and (b.stop_lsn or 0) <= mark.lsn
            ]
    if not fitting:
        earliest = min(b.finished_at for b in done if b.finished_at is not None)
        raise RestoreError(
            f"no physical backup of {database} ended before {target.describe()}: the "
            f"earliest recoverable time is {earliest.isoformat(sep=' ', timespec='seconds')}"
        )
    return fitting[0]


def plan(settings: Settings, catalog: Catalog, request: RecoveryRequest) -> RecoveryPlan:
    """Choose the base backup chain and check its own WAL is archived (catalog only).

    Raises:
        RestoreError: no backup fits the target, its chain is broken, or WAL from the
            backup's own run is missing from the archive.
        ArchiveError: ``into`` exists and is not empty.
    """
    del settings
    if request.into.exists() and (not request.into.is_dir() or any(request.into.iterdir())):
        raise RestoreError(f"{request.into} exists and is not empty: choose a new directory")
    database = request.target.name
    if request.backup_id is not None:
        newest = rows.get_backup(catalog, request.backup_id)
        if newest.status != "completed":
            raise RestoreError(f"base backup {newest.id} is {newest.status}, not completed")
    else:
        newest = _choose(catalog, database, request.recovery_target)
    chain = _chain(catalog, newest)
    assert newest.system_identifier is not None and newest.start_wal is not None
    archived = {r.name for r in rows.segments(catalog, system_identifier=newest.system_identifier)}
    for name in needed_segments(newest):
        if name not in archived:
            raise RestoreError(
                f"WAL segment {name} from the run of base backup {newest.id} is missing "
                "from the archive: that backup cannot be restored; choose another target"
            )
    return RecoveryPlan(
        database=database,
        system_identifier=newest.system_identifier,
        chain=chain,
        target=request.recovery_target,
        into=request.into.absolute(),
        major=int((newest.server_version or "0").split(".")[0]),
        segment_size=newest.segment_size or walnames.DEFAULT_SEGMENT_SIZE,
        first_segment=newest.start_wal,
        archived_segments=len(archived),
    )


def free_port() -> int:
    """A TCP port nobody listens on right now (127.0.0.1)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def conf_value(value: str) -> str:
    """A postgresql.conf string literal: ``'it''s'``."""
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


def _configure(into: Path, settings: dict[str, str], local_trust: bool) -> None:
    auto = into / "postgresql.auto.conf"
    lines = [f"{MARK} ({datetime.now(UTC):%Y-%m-%d %H:%M:%S}Z)"]
    lines += [f"{key} = {conf_value(value)}" for key, value in settings.items()]
    with open(auto, "a", encoding="utf-8") as handle:
        handle.write("\n" + "\n".join(lines) + "\n")
    (into / "standby.signal").unlink(missing_ok=True)
    (into / "recovery.signal").write_text("")
    if local_trust:
        (into / "pg_hba.conf").write_text("local all all trust\n")


def _forget_recovery_settings(into: Path) -> None:
    """After promotion, drop the restore_command and targets from postgresql.auto.conf (the
    script goes away with the spool); ``archive_mode = off`` stays."""
    auto = into / "postgresql.auto.conf"
    kept = [
        line
        for line in auto.read_text(encoding="utf-8").splitlines()
        if not line.startswith(("restore_command", "recovery_target"))
    ]
    auto.write_text("\n".join(kept) + "\n", encoding="utf-8")


def run(
    settings: Settings, catalog: Catalog, recovery: RecoveryPlan, request: RecoveryRequest
) -> RecoveryResult:
    """Recover ``recovery`` into ``recovery.into`` and return where it got to.

    Raises:
        ConfigError: pgvault runs as root without ``server_os_user``.
        ToolError: PostgreSQL of the backup's major version is not installed.
        ArchiveError: a stored base backup is corrupt (nothing is left in ``into``).
        RestoreError: a WAL segment is missing, the target is past the archive's end, or
            recovery failed; the message says what can be reached. ``into`` is removed.
    """
    account = cluster.server_account(settings)
    into = recovery.into
    cluster.require_reachable(into.parent, account)
    work = Path(settings.home).absolute() / "restores" / runtime.new_id()
    prepare_directory(into)
    prepare_directory(work)
    port = request.port or free_port()
    known = {
        r.name: r for r in rows.segments(catalog, system_identifier=recovery.system_identifier)
    }
    first = walnames.parse_segment(recovery.first_segment, recovery.segment_size)
    spool = into / WAL_SPOOL  # inside DIR: wherever DIR is, its server user reaches it
    wal = WalServer(settings, known, first, recovery.segment_size, spool, request.decrypt, account)
    server = Server(into, recovery.major, into / "log" / "pgvault-recovery.log", account)
    ok = False
    try:
        restore_chain(settings, recovery.chain, into, work, request.decrypt, recovery.major)
        (into / "log").mkdir(mode=0o700, exist_ok=True)
        wal.start()
        conf = {
            "restore_command": wal.restore_command(),
            **recovery.target.settings(),
            "recovery_target_action": "promote",
            "archive_mode": "off",
        }
        _configure(into, conf, request.local_trust)
        cluster.give_tree(into, account)
        watch = server.start(_start_settings(request, into, port))
        watch = server.wait(watch, request.timeout)
        result = _outcome(recovery, wal, watch, into, port)
        _forget_recovery_settings(into)
        ok = True
    finally:
        if not ok:
            server.stop()
        wal.stop()
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(spool, ignore_errors=True)
        if ok and not request.keep_running:
            server.stop()
        if not ok:
            shutil.rmtree(into, ignore_errors=True)
    result.running = request.keep_running
    log.info("recovered %s to %s in %s", recovery.database, result.reached_time, into)
    return result


def _start_settings(request: RecoveryRequest, into: Path, port: int) -> dict[str, str]:
    chosen = {"port": str(port)}
    socket_dir = request.socket_dir
    if socket_dir is None and len(str(into / ".s.PGSQL.65535")) < 100:
        socket_dir = into
    chosen["unix_socket_directories"] = str(socket_dir) if socket_dir else ""
    if not request.listen:
        chosen["listen_addresses"] = ""
    return chosen


def _when(moment: datetime | None) -> str:
    return "unknown" if moment is None else moment.isoformat(sep=" ")


def _outcome(
    recovery: RecoveryPlan, wal: WalServer, watch: RecoveryLog, into: Path, port: int
) -> RecoveryResult:
    """Turn what recovery logged into a result, or into the one-line error."""
    reachable = watch.last_xact or recovery.chain[-1].finished_at
    missing = wal.missing_requested()
    if missing is not None:
        raise RestoreError(
            f"WAL segment {missing.name} is missing from the archive ({missing.reason}): the "
            f"latest time that can be reached is {_when(reachable)}"
        )
    if watch.not_reached:
        raise RestoreError(
            f"the archive ends before {recovery.target.describe()}: the latest time that can "
            f"be reached is {_when(reachable)} (is 'pgvault wal stream' running?)"
        )
    if not watch.ready:
        raise RestoreError(f"recovery failed: {watch.fatal or watch.tail(3)}")
    lsn = watch.stop_lsn or watch.redo_done
    return RecoveryResult(
        reached_time=watch.last_xact,
        reached_lsn=None if lsn is None else walnames.format_lsn(lsn),
        data_directory=str(into),
        port=port,
        backup_id=recovery.chain[-1].id,
        target=recovery.target.describe(),
        details={"stopping": watch.stopping or "end of the archive"},
    )
