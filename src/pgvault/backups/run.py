"""Taking a backup: probe, plan, then run the plan under the database's lock.

The flow of :func:`create` (see the README's "backup stream")::

    probe server and tools -> plan (pure) -> lock the database -> storage writable?
    -> catalog row 'running' -> export a snapshot; pg_dump --snapshot ... | compress | sha256
    -> commit the object; count each dumped table's rows in the same snapshot
    -> pg_dumpall --globals-only beside it; manifest beside it -> row 'completed'
    -> copies on the database's other storage targets
    on any failure: writer aborted, stored pieces removed, row 'failed' with one line of error.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from psycopg.conninfo import make_conninfo

from pgvault import runtime, storage, workdirs
from pgvault.backups import copies
from pgvault.backups.counting import SnapshotCounter
from pgvault.backups.estimate import (
    TABLE_SIZES_SQL,
    BackupEstimate,
    CopyWatcher,
    previous_size,
)
from pgvault.backups.plan import BackupPlan, BackupRequest, new_record, plan, probe
from pgvault.backups.record import recording
from pgvault.backups.stream import (
    BackupStream,
    DumpLister,
    Progress,
    dump_directory,
    dump_globals,
    dump_stream,
)
from pgvault.catalog import Catalog, locks
from pgvault.catalog.records import BackupRecord
from pgvault.config.settings import Settings
from pgvault.databases import DatabaseTarget
from pgvault.dumps import toc
from pgvault.dumps.layers import Sink
from pgvault.errors import BackupError, Busy, Cancelled, PgvaultError
from pgvault.postgres import server
from pgvault.postgres.commands import pg_dump_command
from pgvault.postgres.conninfo import ConnInfo
from pgvault.progress import step

log = logging.getLogger(__name__)


def create(
    settings: Settings,
    catalog: Catalog,
    request: BackupRequest,
    *,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
) -> BackupRecord:
    """Back up one database: :func:`~pgvault.backups.plan.probe`, plan, :func:`run`.

    Raises:
        Busy: a backup of the same database is already running (nothing recorded).
        ConnectionFailed: the server cannot be reached (nothing recorded).
        ToolError: no suitable pg_dump (nothing recorded).
        ConfigError: a bad option, recipient or name template (nothing recorded).
        StorageError: the target is not writable (nothing recorded).
        BackupError: the run failed after it started; its row is ``failed``.
        Cancelled: ``cancel`` was set; its row is ``interrupted``.
    """
    facts = probe(settings, request.target)
    chosen = plan(settings, request, facts, started=runtime.now())
    return run(settings, catalog, chosen, progress=progress, cancel=cancel)


def run(
    settings: Settings,
    catalog: Catalog,
    plan: BackupPlan,
    *,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
    tee: Sink | None = None,
) -> BackupRecord:
    """Carry out ``plan`` under the database's lock; return the completed record, after
    its copies on the plan's other targets were made (a failed copy never fails the backup).
    ``tee`` gets the stored bytes as they are written (a live download of the backup).

    Raises:
        As :func:`create`.
    """
    target = plan.target
    with locks.exclusive(settings, catalog, locks.database_lock(target.conn)) as got:
        if not got:
            raise Busy(f"a backup of {target.name} is already running: wait for it to end")
        store = storage.resolve(settings, plan.storage, database=target.name)
        store.check_writable()
        record = new_record(plan, store.name)
        history = catalog.list_backups(database=target.name, status="completed", limit=10)
        estimate = BackupEstimate(previous=previous_size(history, plan.dump_format, plan.method))
        log.info("backup %s of %s started -> %s", plan.backup_id, target.conn.display(), plan.key)
        for note in plan.notes:
            log.info("%s", note)
        try:
            with recording(catalog, store, record):
                snapshot_at = _dump(settings, plan, store, record, progress, cancel, tee, estimate)
        except PgvaultError as exc:
            if isinstance(exc, Cancelled):
                raise
            raise BackupError(f"backup of {target.name} failed: {exc}") from exc
    log.info("backup %s completed: %s bytes", record.id, record.size_bytes)
    if plan.copies:
        copies.replicate(settings, catalog, record, list(plan.copies))
    linked = settings.databases.get(record.database)
    if linked is not None and linked.files:  # files.linked_sets: imported only then
        from pgvault import files

        files.snapshot_for_backup(settings, catalog, record, as_of=snapshot_at, cancel=cancel)
    return record


def _dump(
    settings: Settings,
    plan: BackupPlan,
    store: storage.Storage,
    record: BackupRecord,
    progress: Progress | None,
    cancel: threading.Event | None,
    tee: Sink | None = None,
    estimate: BackupEstimate | None = None,
) -> datetime:
    """pg_dump in an exported snapshot, whose rows are then counted in that same snapshot;
    fills in the record's size, sha256, row and object counts and globals key. Returns the
    moment the snapshot was exported (UTC): linked file snapshots are taken as of it."""
    target, facts = plan.target, plan.facts
    estimate = estimate or BackupEstimate()
    app_name = f"pgvault_backup_{plan.backup_id}"
    with server.connect(target.conn) as conn:
        conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        row = conn.execute("SELECT pg_export_snapshot()").fetchone()
        assert row is not None
        snapshot_at = runtime.now()
        if estimate.previous is None and progress is not None:
            sizes = conn.execute(TABLE_SIZES_SQL).fetchall()
            estimate.tables = {int(str(o)): (int(str(b)), float(str(n))) for o, b, n in sizes}
        stream = BackupStream(
            store,
            plan.key,
            plan.compression,
            plan.level,
            plan.recipients,
            progress,
            cancel,
            tee,
            estimate,
        )
        request = plan.request
        filtered = bool(request.tables or request.exclude_tables or request.schemas)
        counter = None if filtered else SnapshotCounter(target.conn, str(row[0]))
        with (
            workdirs.workdir(settings.home, "backup") as workdir,
            CopyWatcher(target.conn, app_name, estimate),
            counter or contextlib.nullcontext(),
        ):
            entries = _run_pg_dump(plan, str(row[0]), stream, workdir, app_name)
            step(progress, "counting rows in the dump's snapshot")
            existing = set(server.user_tables(conn))
            tables = [t for t in toc.data_tables(entries) if t in existing]
            if counter is not None:
                record.row_counts = counter.counts(tables)
            else:
                record.row_counts = server.count_rows(conn, tables)
        conn.execute("COMMIT")
    if plan.dump_format != "plain":
        record.object_counts = toc.object_counts(entries)
    record.size_bytes, record.sha256 = stream.size, stream.sha256
    if plan.request.with_globals:
        stored = dump_globals(
            settings, store, plan.key, target.conn, facts.major, facts.superuser, plan.recipients
        )
        if stored is not None:
            record.globals_key, record.globals_sha256 = stored
    return snapshot_at


def _run_pg_dump(
    plan: BackupPlan, snapshot: str, stream: BackupStream, workdir: Path, app_name: str
) -> list[toc.TocEntry]:
    request, facts = plan.request, plan.facts
    out_dir = workdir / "dump" if plan.dump_format == "directory" else None
    argv = pg_dump_command(
        facts.pg_dump.path,
        make_conninfo(plan.target.conn.dsn(), application_name=app_name),
        dump_format=plan.dump_format,
        compress=plan.compression.pg_dump_compress,
        jobs=plan.jobs,
        tables=request.tables,
        exclude_tables=request.exclude_tables,
        schemas=request.schemas,
        snapshot=snapshot,
        output_dir=out_dir,
    )
    conn = plan.target.conn
    if out_dir is not None:
        return dump_directory(argv, conn, plan.timeout, stream, out_dir, facts.pg_restore.path)
    lister = DumpLister(plan.dump_format, facts.pg_restore.path, workdir)
    return dump_stream(argv, conn, plan.timeout, stream, lister)


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

    Raises:
        ConnectionFailed: the server cannot be reached to list its databases.
    """
    with server.connect(server_url) as conn:
        dbnames = server.list_databases(conn)
    done, failed = [], []
    for dbname in dbnames:
        target = DatabaseTarget(name=dbname, conn=server_url.with_dbname(dbname))
        try:
            done.append(create(settings, catalog, make_request(target), progress=progress))
        except PgvaultError as exc:
            failed.append((dbname, str(exc)))
    return done, failed
