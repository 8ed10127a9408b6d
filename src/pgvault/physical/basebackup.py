"""Physical base backups: ``pg_basebackup`` streamed through pgvault's pipeline into storage.

::

    catalog row 'running'
    -> pg_basebackup -D - -Ft -X none --checkpoint=fast --manifest-checksums=SHA256
       [--incremental=<previous backup_manifest>]   (PostgreSQL 17+, summarize_wal = on)
       stdout --1 MiB chunks--> tar tap (keeps backup_manifest) + zstd -> [age] -> sha256
       -> Storage writer: base/<system identifier>/<id>/base.tar.zst[.age]   (no temp copy)
    -> backup_manifest stored beside it; its WAL-Ranges give start/stop LSN and timeline
    -> wait until the WAL from start to stop is in the archive (a base backup without its
       WAL restores nothing; pgBackRest's archive-check does the same)
    -> pgvault.json beside it (the catalog row); row 'completed'
    on any failure: writer aborted, stored pieces removed, row 'failed', backup_failed sent.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from pgvault import notify, runtime, storage
from pgvault.catalog import Catalog, locks
from pgvault.catalog import physical as rows
from pgvault.catalog.physical import PhysicalBackupRecord
from pgvault.config.settings import Settings
from pgvault.databases import DatabaseTarget
from pgvault.errors import ArchiveError, BackupError, Busy, ConfigError, PgvaultError
from pgvault.physical import archive as wal_archive
from pgvault.physical import serverinfo, walnames
from pgvault.physical.receiver import require_pitr
from pgvault.physical.stream import WriteChain
from pgvault.physical.tarscan import TarTap
from pgvault.postgres import server, tools
from pgvault.postgres.physical_commands import pg_basebackup_command
from pgvault.postgres.runner import Child
from pgvault.progress import ProgressEvent, Report
from pgvault.storage import Storage

log = logging.getLogger(__name__)

WAL_WAIT_SECONDS = 120.0
WAL_POLL_SECONDS = 0.1
MANIFEST = "backup_manifest"


@dataclass(frozen=True)
class PhysicalBackupRequest:
    """One base backup of the server of ``target``.

    Attributes:
        incremental: against the newest completed base backup (PostgreSQL 17+).
        wal_wait_seconds: how long to wait for the backup's WAL to reach the archive.
        compression_threads: zstd worker threads (0: compress in this thread).
    """

    target: DatabaseTarget
    incremental: bool = False
    trigger: str = "manual"
    labels: dict[str, str] = field(default_factory=dict)
    created_by: str | None = None
    timeout: float | None = None
    wal_wait_seconds: float = WAL_WAIT_SECONDS
    compression_threads: int = 2


class _Cancelled(PgvaultError):
    """The caller asked the backup to stop."""


def backup_prefix(system_identifier: str, backup_id: str) -> str:
    """``base/<system identifier>/<id>/``: where one base backup's objects live."""
    return f"base/{system_identifier}/{backup_id}/"


def parse_manifest(data: bytes) -> tuple[int, int, int, str | None]:
    """``(start_lsn, stop_lsn, timeline, system_identifier)`` from a backup manifest's
    ``WAL-Ranges`` (PostgreSQL docs, "Backup Manifest Format"); the identifier is only in
    manifest version 2 (PostgreSQL 17+).

    Raises:
        ArchiveError: not a manifest, or no WAL range.
    """
    try:
        manifest = json.loads(data)
        ranges = manifest["WAL-Ranges"]
        start = walnames.parse_lsn(ranges[0]["Start-LSN"])
        stop = walnames.parse_lsn(ranges[-1]["End-LSN"])
        timeline = int(ranges[-1]["Timeline"])
    except (ValueError, KeyError, IndexError, TypeError, ConfigError) as exc:
        raise ArchiveError(f"pg_basebackup wrote an unreadable backup_manifest ({exc})") from exc
    sysid = manifest.get("System-Identifier")
    return start, stop, timeline, None if sysid is None else str(sysid)


def create(
    settings: Settings,
    catalog: Catalog,
    request: PhysicalBackupRequest,
    *,
    progress: Report | None = None,
    cancel: threading.Event | None = None,
) -> PhysicalBackupRecord:
    """Take one base backup of ``request.target``'s server; return its completed record.

    Raises:
        ConfigError: pitr is off, or ``--incremental`` without a base or on < 17.
        Busy: a base backup of that server is running (nothing recorded).
        ConnectionFailed, ToolError: before anything was recorded.
        BackupError: the run failed; its row is ``failed`` and nothing is left in storage.
    """
    target = request.target
    require_pitr(target)
    lock = f"physical-backup:{target.conn.server_key()}"
    with locks.exclusive(settings, catalog, lock) as got:
        if not got:
            raise Busy(f"a base backup of {target.conn.server_key()} is already running")
        return _create(settings, catalog, request, progress, cancel)


def _parent(
    catalog: Catalog, request: PhysicalBackupRequest, identity: serverinfo.ServerIdentity
) -> PhysicalBackupRecord | None:
    if not request.incremental:
        return None
    if identity.major < 17:
        raise ConfigError(
            f"incremental base backups need PostgreSQL 17 or newer (this server is "
            f"{identity.version}): take a full one"
        )
    with server.connect(request.target.conn) as conn:
        row = conn.execute("SELECT current_setting('summarize_wal')").fetchone()
    if row is None or str(row[0]) != "on":
        raise ConfigError("incremental base backups need summarize_wal = on on the server")
    chain = [
        r
        for r in rows.list_backups(catalog, database=request.target.name, status="completed")
        if r.system_identifier == identity.system_identifier
    ]
    if not chain:
        raise ConfigError(
            f"no completed base backup of {request.target.name} to be incremental against: "
            "take a full one first"
        )
    return chain[0]


def _create(
    settings: Settings,
    catalog: Catalog,
    request: PhysicalBackupRequest,
    progress: Report | None,
    cancel: threading.Event | None,
) -> PhysicalBackupRecord:
    target = request.target
    identity = serverinfo.identify(target.conn)
    parent = _parent(catalog, request, identity)
    store = wal_archive.wal_storage(settings, target)
    recipients = wal_archive.recipients_of(settings, target)
    store.check_writable()
    tool = tools.choose_matching("pg_basebackup", identity.major, settings.bin_dir)
    started = datetime.now(UTC)
    backup_id = runtime.new_id(started)
    prefix = backup_prefix(identity.system_identifier, backup_id)
    record = PhysicalBackupRecord(
        id=backup_id,
        database=target.name,
        server=target.conn.server_key(),
        environment=target.environment,
        kind="incremental" if parent else "full",
        parent_id=parent.id if parent else None,
        trigger=request.trigger,
        storage=store.name,
        storage_key=prefix + "base.tar.zst" + (".age" if recipients else ""),
        encrypted=bool(recipients),
        server_version=identity.version,
        tool_version=tool.version,
        system_identifier=identity.system_identifier,
        segment_size=identity.segment_size,
        started_at=started,
        labels={**target.settings.labels, **request.labels},
        created_by=request.created_by,
        runner=f"{socket.gethostname()}:{os.getpid()}",
    )
    rows.save_backup(catalog, record)
    log.info("base backup %s of %s started -> %s", backup_id, record.server, record.storage_key)
    try:
        with tempfile.TemporaryDirectory(prefix="pgvault-base-") as tmp:
            previous = _parent_manifest(settings, parent, Path(tmp)) if parent else None
            argv = pg_basebackup_command(
                tool.path,
                target.conn.dsn(),
                label=f"pgvault {backup_id}",
                incremental_manifest=previous,
            )
            chain = WriteChain(
                store, record.storage_key, recipients, threads=request.compression_threads
            )
            manifest = _stream(argv, target, chain, request.timeout, progress, cancel)
        record.size_bytes, record.sha256 = chain.size, chain.sha256
        _describe(record, manifest, identity)
        record.manifest_key = prefix + MANIFEST
        record.manifest_sha256 = _sha256(manifest)
        store.write_bytes(record.manifest_key, manifest)
        record.finished_at = datetime.now(UTC)
        if progress:
            progress(ProgressEvent("waiting for the WAL of the backup", record.size_bytes or 0))
        _wait_for_wal(catalog, record, request.wal_wait_seconds, cancel)
        record.status = "completed"
        record.duration_seconds = (datetime.now(UTC) - started).total_seconds()
        store.write_bytes(prefix + "pgvault.json", record.model_dump_json(indent=2).encode())
        rows.save_backup(catalog, record)
    except BaseException as exc:
        _fail(settings, catalog, store, record, exc)
        if isinstance(exc, PgvaultError) and not isinstance(exc, _Cancelled):
            raise BackupError(f"base backup of {target.name} failed: {exc}") from exc
        raise
    log.info("base backup %s completed: %s bytes", backup_id, record.size_bytes)
    return record


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _parent_manifest(settings: Settings, parent: PhysicalBackupRecord, tmp: Path) -> Path:
    """Download the parent's backup_manifest (checked against its sha256) for --incremental."""
    if parent.manifest_key is None:
        raise ArchiveError(f"base backup {parent.id} has no stored backup_manifest")
    data = storage.resolve(settings, parent.storage).read_bytes(parent.manifest_key)
    if _sha256(data) != parent.manifest_sha256:
        raise ArchiveError(f"the stored backup_manifest of {parent.id} is corrupt")
    path = tmp / "parent_backup_manifest"
    path.write_bytes(data)
    return path


def _stream(
    argv: list[str],
    target: DatabaseTarget,
    chain: WriteChain,
    timeout: float | None,
    progress: Report | None,
    cancel: threading.Event | None,
) -> bytes:
    """pg_basebackup's stdout -> tar tap + write chain; commit only after it exited 0.
    Returns the backup_manifest's bytes."""
    tap = TarTap([MANIFEST])
    try:
        with Child(argv, env=target.conn.child_env(), timeout=timeout) as child:
            for chunk in child.chunks():
                if cancel is not None and cancel.is_set():
                    raise _Cancelled("base backup cancelled")
                tap.feed(chunk)
                chain.write(chunk)
                if progress is not None:
                    progress(ProgressEvent("copying", chain.fed))
            child.check()
        if MANIFEST not in tap.found:
            raise ArchiveError("pg_basebackup's stream held no backup_manifest")
        chain.commit()
    except BaseException:
        chain.abort()
        raise
    return tap.found[MANIFEST]


def _describe(
    record: PhysicalBackupRecord, manifest: bytes, identity: serverinfo.ServerIdentity
) -> None:
    start, stop, timeline, sysid = parse_manifest(manifest)
    if sysid is not None and sysid != identity.system_identifier:
        raise ArchiveError(
            f"the backup's system identifier {sysid} is not the server's "
            f"{identity.system_identifier}"
        )
    size = identity.segment_size
    record.start_lsn, record.stop_lsn, record.timeline = start, stop, timeline
    record.start_wal = walnames.segment_of(start, timeline, size).name(size)
    # stop_lsn is the end of the backup-end record; the byte before it is in the last
    # segment the backup needs (stop_lsn may sit exactly on a segment boundary)
    record.stop_wal = walnames.segment_of(max(stop - 1, start), timeline, size).name(size)


def needed_segments(record: PhysicalBackupRecord) -> list[str]:
    """The WAL segments from the backup's start to its stop (inclusive), by name."""
    size = record.segment_size or walnames.DEFAULT_SEGMENT_SIZE
    assert record.start_wal is not None and record.stop_wal is not None
    first = walnames.parse_segment(record.start_wal, size)
    last = walnames.parse_segment(record.stop_wal, size)
    return [
        walnames.Segment(last.timeline, n).name(size) for n in range(first.number, last.number + 1)
    ]


def _wait_for_wal(
    catalog: Catalog,
    record: PhysicalBackupRecord,
    wait_seconds: float,
    cancel: threading.Event | None,
) -> None:
    """Poll the catalog until every segment from start to stop is archived.

    Raises:
        BackupError: some segment did not arrive in time (names it and what to check).
    """
    assert record.system_identifier is not None
    deadline = time.monotonic() + wait_seconds
    stop = cancel or threading.Event()
    for name in needed_segments(record):
        while rows.get_segment(catalog, record.system_identifier, name) is None:
            if time.monotonic() > deadline:
                raise BackupError(
                    f"WAL segment {name} needed by this backup did not reach the archive "
                    f"within {wait_seconds:.0f} s: is 'pgvault wal stream --database "
                    f"{record.database}' running (or archive_command set)?"
                )
            if stop.wait(WAL_POLL_SECONDS):
                raise _Cancelled("base backup cancelled while waiting for its WAL")


def remove_stored(store: Storage, record: PhysicalBackupRecord) -> None:
    """Remove a base backup's objects (archive, manifest, pgvault.json; partial uploads too);
    missing ones are fine."""
    assert record.system_identifier is not None
    prefix = backup_prefix(record.system_identifier, record.id)
    for key in (record.storage_key, prefix + MANIFEST, prefix + "pgvault.json"):
        store.discard_partial(key)
        store.delete(key)


def _fail(
    settings: Settings,
    catalog: Catalog,
    store: Storage,
    record: PhysicalBackupRecord,
    exc: BaseException,
) -> None:
    interrupted = isinstance(exc, KeyboardInterrupt | SystemExit | _Cancelled)
    record.status = "interrupted" if interrupted else "failed"
    record.error = str(exc) or type(exc).__name__
    record.finished_at = datetime.now(UTC)
    record.duration_seconds = (record.finished_at - record.started_at).total_seconds()
    try:
        if record.system_identifier is not None:
            remove_stored(store, record)
    except PgvaultError as cleanup:
        log.warning("stored pieces of %s not removed: %s", record.id, cleanup)
    try:
        rows.save_backup(catalog, record)
    except PgvaultError:
        log.exception("could not record the failure of base backup %s", record.id)
    if not interrupted:
        notify.notify(settings, "backup_failed", record.database, error=record.error)
    log.info("base backup %s %s: %s", record.id, record.status, record.error)
