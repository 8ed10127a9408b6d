"""Taking backups: pg_dump streamed through compression and hashing into a storage target.

The flow of :func:`create` (see the README's "backup stream")::

    catalog row 'running'
    -> export a snapshot; pg_dump --snapshot ... | compress | sha256 | Storage writer
    -> commit the object; read its TOC; count each dumped table's rows in the same snapshot
    -> pg_dumpall --globals-only beside it; manifest JSON beside it
    -> catalog row 'completed'
    on any failure: writer aborted, stored pieces removed, row 'failed' with one line of error.
"""

from __future__ import annotations

import io
import logging
import os
import socket
import tarfile
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import psutil

from pgvault import files, storage
from pgvault.backups import copies
from pgvault.backups import naming as names
from pgvault.catalog import Catalog, locks
from pgvault.catalog.records import BackupRecord, Trigger, manifest_key_for
from pgvault.config.settings import Settings
from pgvault.databases import DatabaseTarget
from pgvault.dumps import toc as archives
from pgvault.dumps.encryption import Encryptor, parse_recipients
from pgvault.dumps.layers import (
    DecryptHook,
    HashingWriter,
    Stage,
    compressor,
    copy_stream,
    open_layers,
)
from pgvault.errors import BackupError, Busy, PgvaultError, StorageError
from pgvault.postgres import runner, server, tools
from pgvault.postgres.commands import pg_dump_command, pg_dumpall_globals_command
from pgvault.postgres.conninfo import ConnInfo
from pgvault.postgres.runner import Child
from pgvault.storage import Storage

log = logging.getLogger(__name__)

Progress = Callable[[str, int], None]
"""Called with a phase name and the bytes written so far."""


class Cancelled(PgvaultError):
    """The caller asked the run to stop."""


@dataclass(frozen=True)
class BackupRequest:
    """What to back up and how; unset options fall back to the database's settings."""

    target: DatabaseTarget
    dump_format: str | None = None
    compression: str | None = None
    level: int | None = None
    jobs: int | None = None
    tables: Sequence[str] = ()
    exclude_tables: Sequence[str] = ()
    schemas: Sequence[str] = ()
    labels: dict[str, str] = field(default_factory=dict)
    storage: str | None = None
    trigger: Trigger = "manual"
    created_by: str | None = None
    timeout: float | None = None
    with_globals: bool = True
    recipients: Sequence[str] = ()


@dataclass(frozen=True)
class CompressionPlan:
    """Who compresses: ``pg_dump_compress`` is pg_dump's ``--compress`` value, ``stream`` the
    method pgvault applies to the stream (``none`` when pg_dump compresses)."""

    pg_dump_compress: str | None
    stream: str
    compressed_by: str | None


def default_form(
    pg_dump: tools.Tool,
    dump_format: str | None,
    method: str | None,
    level: int | None,
    jobs: int | None,
) -> tuple[str, str, int | None, int]:
    """The stored form when the user did not choose one: ``(format, method, level, jobs)``.

    Chosen so that the backup is fast and the restore runs ``pg_restore -j`` straight from
    what is stored (measured in ``bench/RESULTS.md``):

    * pg_dump built with zstd (>= 16): ``custom`` archive compressed by pg_dump with zstd;
    * otherwise: ``directory`` archive, ``-j`` one worker per core (at most 4), gzip level 1
      by pg_dump (stored as a tar); a zstd stream would restore only serially (1.17x).

    Whatever the user sets explicitly is kept; only the unset parts are filled in.
    """
    workers = max(1, min(4, os.cpu_count() or 1))
    if dump_format is None and method is None:
        if tools.supports_compression(pg_dump, "zstd"):
            return "custom", "zstd", level, 1 if jobs is None else jobs
        return "directory", "gzip", 1 if level is None else level, jobs or workers
    chosen_format = dump_format or "custom"
    chosen_jobs = jobs if jobs is not None else (workers if chosen_format == "directory" else 1)
    return chosen_format, method or "zstd", level, chosen_jobs


def plan_compression(
    dump_format: str, method: str, level: int | None, pg_dump: tools.Tool, compress_in: str
) -> CompressionPlan:
    """Choose where compression happens for a format, method and pg_dump version.

    * custom + zstd: a pg_dump >= 16 built with zstd compresses inside the archive
      (``--compress=zstd:N``), so the stored file is a plain custom archive that
      ``pg_restore -j`` reads in parallel; otherwise pg_dump writes ``-Z0`` and pgvault
      compresses the stream (``zstd -d`` reads it).
    * custom + gzip: inside the archive (every pg_dump supports it).
    * plain: always the stream (a ``.sql.zst``/``.sql.gz`` any CLI decompresses).
    * directory: inside the archive (zstd needs pg_dump >= 16; else the tar stream).
    ``compress_in`` = ``pg_dump`` or ``stream`` forces the choice where possible.
    """
    if method == "none":
        return CompressionPlan("0" if dump_format != "plain" else None, "none", None)
    native_ok = tools.supports_compression(pg_dump, method)
    use_native = dump_format != "plain" and native_ok and compress_in != "stream"
    if dump_format == "directory" and not native_ok:
        use_native = False
    if use_native:
        if pg_dump.major >= 16:
            spec = method if level is None else f"{method}:{level}"
        else:
            spec = str(6 if level is None else level)
        return CompressionPlan(spec, "none", "pg_dump")
    return CompressionPlan("0" if dump_format != "plain" else None, method, "pgvault")


def _runner_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _now() -> datetime:
    return datetime.now(UTC)


def _first_storage(request: BackupRequest, settings: Settings) -> Storage:
    chosen = request.storage or next(iter(request.target.settings.storage), None)
    return storage.resolve(settings, chosen)


def create(
    settings: Settings,
    catalog: Catalog,
    request: BackupRequest,
    *,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
) -> BackupRecord:
    """Back up one database; return its completed catalog record.

    Raises:
        Busy: a backup of the same database is already running (nothing recorded).
        ConnectionFailed: the server cannot be reached (nothing recorded).
        ToolError: no suitable pg_dump (nothing recorded).
        StorageError: the target is not writable (nothing recorded).
        BackupError: the run failed after it started; its row is ``failed``.
    """
    lock = f"backup:{request.target.conn.server_key()}/{request.target.conn.dbname}"
    with locks.exclusive(settings, catalog, lock) as got:
        if not got:
            raise Busy(f"a backup of {request.target.name} is already running: wait for it to end")
        return _create(settings, catalog, request, progress, cancel)


def _create(
    settings: Settings,
    catalog: Catalog,
    request: BackupRequest,
    progress: Progress | None,
    cancel: threading.Event | None,
) -> BackupRecord:
    target = request.target
    db = target.settings
    store = _first_storage(request, settings)
    asked_format = request.dump_format or db.format
    asked_method = request.compression or db.compression
    level = request.level if request.level is not None else db.level
    recipients = list(request.recipients or db.encrypt_to or settings.age_recipients)
    parse_recipients(recipients)  # refuse bad recipients before anything starts
    with server.connect(target.conn) as conn:
        major, version = server.server_version(conn)
        pg_dump = tools.choose("pg_dump", major, settings.bin_dir)
        pg_restore = tools.choose("pg_restore", pg_dump.major, settings.bin_dir)
        superuser = server.is_superuser(conn)
        store.check_writable()
        dump_format, method, level, jobs = default_form(
            pg_dump, asked_format, asked_method, level, request.jobs
        )
        plan = plan_compression(dump_format, method, level, pg_dump, settings.compress_in)
        started = _now()
        backup_id = names.new_id(started)
        key = names.render_key(
            db.name_template or settings.name_template,
            started=started,
            timezone=db.timezone or settings.timezone,
            id=backup_id,
            database=target.name,
            dbname=target.conn.dbname,
            environment=target.environment,
            format=dump_format,
            ext=names.extension(dump_format, method, plan.compressed_by)
            + (".age" if recipients else ""),
            trigger=request.trigger,
        )
        record = BackupRecord(
            id=backup_id,
            database=target.name,
            dbname=target.conn.dbname,
            server=target.conn.server_key(),
            environment=target.environment,
            trigger=request.trigger,
            format=dump_format,
            compression=method,
            compression_level=level,
            encrypted=bool(recipients),
            compressed_by=plan.compressed_by,
            tables=list(request.tables),
            exclude_tables=list(request.exclude_tables),
            schemas=list(request.schemas),
            labels={**db.labels, **request.labels},
            storage=store.name,
            storage_key=key,
            server_version=version,
            pg_dump_version=pg_dump.version,
            started_at=started,
            created_by=request.created_by,
            runner=_runner_id(),
        )
        catalog.add_backup(record)
        log.info("backup %s of %s started -> %s", backup_id, target.conn.display(), key)
        try:
            conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            row = conn.execute("SELECT pg_export_snapshot()").fetchone()
            assert row is not None
            snapshot_at = _now()  # the moment linked file snapshots are taken "as of"
            timeout = request.timeout if request.timeout is not None else settings.backup_timeout
            stream = _Stream(store, key, plan, level, recipients, progress, cancel)
            with tempfile.TemporaryDirectory(prefix="pgvault-") as workdir:
                out_dir = Path(workdir) / "dump" if dump_format == "directory" else None
                argv = pg_dump_command(
                    pg_dump.path,
                    target.conn.dsn(),
                    dump_format=dump_format,
                    compress=plan.pg_dump_compress,
                    jobs=jobs,
                    tables=request.tables,
                    exclude_tables=request.exclude_tables,
                    schemas=request.schemas,
                    snapshot=str(row[0]),
                    output_dir=out_dir,
                )
                if out_dir is not None:
                    entries = _dump_directory(
                        argv, target.conn, timeout, stream, out_dir, pg_restore.path
                    )
                else:
                    lister = _Lister(dump_format, pg_restore.path, Path(workdir))
                    entries = _dump_stream(argv, target.conn, timeout, stream, lister)
            if progress:
                progress("counting rows", stream.size)
            existing = set(server.user_tables(conn))
            tables = [t for t in archives.data_tables(entries) if t in existing]
            record.row_counts = server.count_rows(conn, tables)
            conn.execute("COMMIT")
            if dump_format != "plain":
                record.object_counts = archives.object_counts(entries)
            record.size_bytes, record.sha256 = stream.size, stream.sha256
            if request.with_globals:
                record.globals_key = _dump_globals(
                    store, key, target.conn, major, superuser, settings, recipients
                )
            record.status = "completed"
            record.finished_at = _now()
            record.duration_seconds = (record.finished_at - started).total_seconds()
            store.write_bytes(record.manifest_key, record.model_dump_json(indent=2).encode())
            catalog.save_backup(record)
        except BaseException as exc:
            _fail(catalog, store, record, exc)
            if isinstance(exc, PgvaultError) and not isinstance(exc, Cancelled):
                raise BackupError(f"backup of {target.name} failed: {exc}") from exc
            raise
    log.info("backup %s completed: %s bytes", backup_id, record.size_bytes)
    if request.storage is None and len(db.storage) > 1:
        copies.replicate(settings, catalog, record, db.storage[1:])
    files.snapshot_for_backup(settings, catalog, record, as_of=snapshot_at, cancel=cancel)
    return record


class _Stream:
    """The write chain of one backup: [compressor] -> sha256/size -> storage writer."""

    def __init__(
        self,
        store: Storage,
        key: str,
        plan: CompressionPlan,
        level: int | None,
        recipients: Sequence[str],
        progress: Progress | None,
        cancel: threading.Event | None,
    ) -> None:
        self.writer = store.open_write(key)
        self._hashing = HashingWriter(self.writer)
        self._encryptor = (
            Encryptor(self._hashing, parse_recipients(recipients)) if recipients else None
        )
        self._top: Stage = compressor(plan.stream, level, self._encryptor or self._hashing)
        self._progress = progress
        self._cancel = cancel
        self._fed = 0

    def write(self, data: bytes, /) -> int:
        if self._cancel is not None and self._cancel.is_set():
            raise Cancelled("backup cancelled")
        self._top.write(data)
        self._fed += len(data)
        if self._progress is not None:
            self._progress("dumping", self._fed)
        return len(data)

    def commit(self) -> None:
        self._top.close()
        if self._encryptor is not None:
            self._encryptor.close()
        self.writer.commit()

    @property
    def size(self) -> int:
        return self._hashing.size

    @property
    def sha256(self) -> str:
        return self._hashing.sha256


class _Lister:
    """Lists what a streamed dump holds as it passes: a TOC tap for custom archives, a COPY
    scanner for plain SQL."""

    def __init__(self, dump_format: str, pg_restore: Path, workdir: Path) -> None:
        self._scanner = archives.CopyScanner() if dump_format == "plain" else None
        self._tap = archives.TocTap(pg_restore, workdir) if self._scanner is None else None

    def feed(self, chunk: bytes) -> None:
        if self._scanner is not None:
            self._scanner.feed(chunk)
        elif self._tap is not None:
            self._tap.feed(chunk)

    def entries(self) -> list[archives.TocEntry]:
        if self._tap is not None:
            return self._tap.entries()
        assert self._scanner is not None
        return [archives.TocEntry("TABLE DATA", s, t) for s, t in self._scanner.tables]

    def close(self) -> None:
        if self._tap is not None:
            self._tap.close()


def _dump_stream(
    argv: list[str], conn: ConnInfo, timeout: float | None, stream: _Stream, lister: _Lister
) -> list[archives.TocEntry]:
    """pg_dump's stdout -> lister + write chain; commit only after pg_dump exited 0."""
    try:
        with Child(argv, env=conn.child_env(), timeout=timeout) as child:
            for chunk in child.chunks():
                lister.feed(chunk)
                stream.write(chunk)
            child.check()
        entries = lister.entries()
        stream.commit()
    except BaseException:
        stream.writer.abort()
        raise
    finally:
        lister.close()
    return entries


def _dump_directory(
    argv: list[str],
    conn: ConnInfo,
    timeout: float | None,
    stream: _Stream,
    out: Path,
    pg_restore: Path,
) -> list[archives.TocEntry]:
    """Run pg_dump -Fd into ``out``, then stream it as a tar with ``toc.dat`` first."""
    try:
        with Child(argv, env=conn.child_env(), stdout=None, timeout=timeout) as child:
            child.check()
        entries = archives.toc_from_path(pg_restore, out)
        with tarfile.open(fileobj=stream, mode="w|") as tar:  # type: ignore[call-overload]
            tar.add(out / "toc.dat", arcname="toc.dat")
            for path in sorted(out.iterdir()):
                if path.name != "toc.dat":
                    tar.add(path, arcname=path.name)
        stream.commit()
    except BaseException:
        stream.writer.abort()
        raise
    return entries


def _dump_globals(
    store: Storage,
    key: str,
    conn: ConnInfo,
    major: int,
    superuser: bool,
    settings: Settings,
    recipients: Sequence[str],
) -> str | None:
    """Store ``pg_dumpall --globals-only`` beside the backup (age-encrypted like the backup:
    it holds role password hashes); a failure only warns."""
    globals_key = key + ".globals.sql" + (".age" if recipients else "")
    try:
        pg_dumpall = tools.choose("pg_dumpall", major, settings.bin_dir)
        argv = pg_dumpall_globals_command(pg_dumpall.path, conn.dsn(), role_passwords=superuser)
        text = runner.run(argv, env=conn.child_env(), timeout=600).encode()
        if recipients:
            sealed = io.BytesIO()
            encryptor = Encryptor(sealed, parse_recipients(recipients))
            encryptor.write(text)
            encryptor.close()
            text = sealed.getvalue()
        store.write_bytes(globals_key, text)
    except PgvaultError as exc:
        log.warning("globals (roles, tablespaces) not stored: %s", exc)
        return None
    return globals_key


def _fail(catalog: Catalog, store: Storage, record: BackupRecord, exc: BaseException) -> None:
    interrupted = isinstance(exc, KeyboardInterrupt | SystemExit | Cancelled)
    record.status = "interrupted" if interrupted else "failed"
    record.error = str(exc) or type(exc).__name__
    record.finished_at = _now()
    record.duration_seconds = (record.finished_at - record.started_at).total_seconds()
    remove_stored(store, record)
    try:
        catalog.save_backup(record)
    except PgvaultError:
        log.exception("could not record the failure of backup %s", record.id)
    log.info("backup %s %s: %s", record.id, record.status, record.error)  # the caller reports it


CLEANUP_RETRY_DELAYS = (1.0, 2.0, 4.0, 8.0)  # seconds between attempts while storage is down


def remove_stored(
    store: Storage, record: BackupRecord, retry_delays: Sequence[float] = CLEANUP_RETRY_DELAYS
) -> None:
    """Remove a backup's object, partial writes (open multipart uploads), globals and
    manifest; missing ones are fine. Storage errors are retried after the ``retry_delays``
    (seconds, one budget for all keys), so a short outage still ends with nothing left."""
    keys = copies.stored_keys(record)
    keys += [record.storage_key + ".globals.sql", record.storage_key + ".globals.sql.age"]
    delays = list(retry_delays)
    for key in keys:
        while True:
            try:
                store.discard_partial(key)
                store.delete(key)
                break
            except PgvaultError as exc:
                if not delays:
                    log.warning("could not remove %s: %s", key, exc)
                    break
                delay = delays.pop(0)
                log.info("removing %s failed (%s); retrying in %.0f s", key, exc, delay)
                time.sleep(delay)


def recover_interrupted(settings: Settings, catalog: Catalog) -> list[BackupRecord]:
    """Mark ``interrupted`` the backups left ``running`` by a dead process of this host, and
    remove their partial files. Runs at every start; rows of other hosts are left alone."""
    host = socket.gethostname()
    recovered = []
    for record in catalog.running_backups():
        owner, _, pid_text = (record.runner or "").rpartition(":")
        if owner != host or not pid_text.isdigit():
            continue
        if _alive_since(int(pid_text), record.started_at):
            continue
        record.status = "interrupted"
        record.error = "the pgvault process running this backup died"
        record.finished_at = _now()
        try:
            remove_stored(storage.resolve(settings, record.storage), record)
        except PgvaultError as exc:
            log.warning("partial files of %s not removed: %s", record.id, exc)
        catalog.save_backup(record)
        recovered.append(record)
        log.warning("backup %s was interrupted (its process died); marked interrupted", record.id)
    return recovered


def _alive_since(pid: int, started: datetime) -> bool:
    try:
        proc = psutil.Process(pid)
        return bool(proc.create_time() <= started.timestamp() + 1) and proc.is_running()
    except psutil.Error:
        return False


def delete(settings: Settings, catalog: Catalog, backup_id: str) -> BackupRecord:
    """Delete a backup's stored pieces, then mark its row ``deleted`` (kept for history).

    Raises:
        NotFound: unknown id.
    """
    record = catalog.get_backup(backup_id)
    remove_stored(storage.resolve(settings, record.storage), record)
    copies.remove_copies(settings, catalog, record)
    record.status = "deleted"
    catalog.save_backup(record)
    return record


def create_all(
    settings: Settings,
    catalog: Catalog,
    server_url: ConnInfo,
    make_request: Callable[[DatabaseTarget], BackupRequest],
    *,
    progress: Progress | None = None,
) -> tuple[list[BackupRecord], list[tuple[str, str]]]:
    """Back up every non-template database of a server, one backup each.

    Returns:
        ``(completed records, [(database, error line), ...])``; one failure does not stop
        the others.
    """
    with server.connect(server_url) as conn:
        names_ = server.list_databases(conn)
    done, failed = [], []
    for dbname in names_:
        target = DatabaseTarget(name=dbname, conn=server_url.with_dbname(dbname))
        try:
            done.append(create(settings, catalog, make_request(target), progress=progress))
        except PgvaultError as exc:
            failed.append((dbname, str(exc)))
    return done, failed


def stored_manifests(store: Storage) -> list[BackupRecord]:
    """The backups a storage target holds, read from their manifests (oldest first).

    Manifests whose backup object is missing are skipped with a warning; ``storage`` of
    each record is set to ``store``'s name. Works across environments sharing one bucket.

    Raises:
        StorageError: the target cannot be listed or read.
    """
    keys = {info.key for info in store.list()}
    found = []
    for key in sorted(keys):
        if not key.endswith(".manifest.json"):
            continue
        try:
            record = BackupRecord.model_validate_json(store.read_bytes(key))
        except ValueError as exc:
            log.warning("skipping unreadable manifest %s: %s", key, exc)
            continue
        if record.storage_key not in keys or manifest_key_for(record.storage_key) != key:
            log.warning("skipping manifest %s: its backup object is missing", key)
            continue
        record.storage = store.name
        found.append(record)
    return sorted(found, key=lambda r: r.started_at)


def rebuild_catalog(catalog: Catalog, store: Storage) -> list[BackupRecord]:
    """Recreate catalog rows from the manifests stored beside each backup; existing rows
    are replaced. Returns the records written, oldest first.

    Raises:
        StorageError: the target cannot be listed or read.
    """
    records = stored_manifests(store)
    for record in records:
        catalog.save_backup(record)
    return records


def download(
    settings: Settings,
    catalog: Catalog,
    record: BackupRecord,
    output: Path,
    *,
    decompress: bool = False,
    decrypt: DecryptHook | None = None,
) -> int:
    """Copy a stored backup to ``output``; with ``decompress`` remove its zstd/gzip (and age)
    layers so plain ``pg_restore``/``psql`` reads the file. Returns the bytes written.

    Raises:
        NotFound: the object is missing.
        StorageError: it cannot be read or ``output`` cannot be written.
    """
    store = copies.readable_location(settings, catalog, record)
    partial = output.with_name(output.name + ".partial")
    try:
        with store.open_read(record.storage_key) as raw, open(partial, "wb") as out:
            stream = open_layers(raw, decrypt).stream if decompress else raw
            written = copy_stream(stream, out)
        partial.replace(output)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise StorageError(f"cannot write {output}: {exc.strerror}") from exc
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return written
