"""Restores that never leave a team with less than it had.

A restore is a plan of steps, each with its undo (see the README's "restore plan")::

    swap:     guards -> safety backup of the live database -> create a scratch database
              -> load the dump -> check row counts -> post-restore SQL
              -> block connections, terminate sessions, rename live -> <db>_pre_restore_<ts>,
                 rename scratch -> live
    undo:     any failure before the renames drops the scratch database; the live one is
              untouched. A failure between the two renames renames live back.
    clean:    in place, pg_restore --clean --if-exists --no-owner --no-privileges in one
              transaction (all or nothing), for roles that cannot create databases.
    recreate: drop, create, load (the safety backup is the way back).
"""

from __future__ import annotations

import io
import logging
import tempfile
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

import psycopg

from pgvault import files, storage
from pgvault.backups import copies
from pgvault.backups import naming as names
from pgvault.backups import run as backups
from pgvault.catalog import Catalog
from pgvault.catalog.records import BackupRecord, RestoreRecord
from pgvault.config.settings import RestoreMode, Settings
from pgvault.databases import DatabaseTarget, check_environment
from pgvault.dumps import toc as archives
from pgvault.dumps.layers import DecryptHook, HashingReader, open_layers
from pgvault.errors import ArchiveError, NotFound, PgvaultError, Refused, RestoreError
from pgvault.operations import notify
from pgvault.postgres import runner, server, tools
from pgvault.postgres.commands import psql_command
from pgvault.postgres.conninfo import ConnInfo
from pgvault.restores.loading import LoadOptions, LoadResult, Source, Tools, default_jobs, load

log = logging.getLogger(__name__)

Conn = psycopg.Connection[tuple[object, ...]]
PRE_RESTORE_MARK = "_pre_restore_"
SCRATCH_MARK = "_pgvault_scratch_"


@dataclass(frozen=True)
class RestoreRequest:
    """One restore: what (a backup id or a file), where, and how."""

    target: DatabaseTarget
    backup_id: str | None = None
    file: Path | None = None
    mode: RestoreMode = "swap"
    jobs: int | None = None
    confirm: str | None = None
    safety_backup: bool = True
    drop_previous: bool = False
    with_globals: bool = False
    no_owner: bool = False
    no_privileges: bool = False
    decrypt: DecryptHook | None = None
    created_by: str | None = None
    with_files: bool = False


@dataclass
class TableCheck:
    """A table's rows: recorded at backup time and found in the target now."""

    table: str
    recorded: int | None
    current: int | None


@dataclass
class RestorePlan:
    """What a restore would do (``--dry-run`` prints this and changes nothing)."""

    source: str
    kind: str
    layers: list[str]
    target: str
    dbname: str
    target_exists: bool
    mode: str
    jobs: int
    safety_backup: bool
    objects: dict[str, int] = field(default_factory=dict)
    tables: list[TableCheck] = field(default_factory=list)


def _source(
    settings: Settings, catalog: Catalog, request: RestoreRequest
) -> tuple[Source, BackupRecord | None]:
    if (request.backup_id is None) == (request.file is None):
        raise RestoreError("give either a backup id or --file PATH")
    if request.file is not None:
        path = request.file
        if not path.is_file():
            raise NotFound(f"file {path} does not exist")

        def open_file() -> IO[bytes]:
            return open(path, "rb")

        return Source(str(path), open_file, path, request.decrypt), None
    record = catalog.get_backup(request.backup_id or "")
    if record.status != "completed":
        raise RestoreError(
            f"backup {record.id} is {record.status}, not completed: choose another backup"
        )
    store = copies.readable_location(settings, catalog, record)

    def open_object() -> IO[bytes]:
        return store.open_read(record.storage_key)

    return Source(
        record.id, open_object, store.local_path(record.storage_key), request.decrypt
    ), record


def client_tools(settings: Settings) -> Tools:
    """The pg_restore and psql a restore uses: the newest installed (they read every older
    archive)."""
    return Tools(
        pg_restore=tools.choose("pg_restore", None, settings.bin_dir).path,
        psql=tools.choose("psql", None, settings.bin_dir).path,
    )


def _maintenance(info: ConnInfo) -> ConnInfo:
    return info.with_dbname("postgres")


def plan(settings: Settings, catalog: Catalog, request: RestoreRequest) -> RestorePlan:
    """Describe the restore without changing anything: the archive's objects by type, and per
    table the row count recorded at backup time beside the target's current count.

    Raises:
        NotFound, ArchiveError, ConnectionFailed: as for :func:`run`.
    """
    source, record = _source(settings, catalog, request)
    dbname = request.target.conn.dbname
    tool_set = client_tools(settings)
    with tempfile.TemporaryDirectory(prefix="pgvault-plan-") as tmp:
        opened = source.open()
        with opened.stream as stream:
            entries = archives.toc_of_stored(
                tool_set.pg_restore, stream, opened.kind, Path(tmp), source.seekable_file(opened)
            )
    with server.connect(_maintenance(request.target.conn)) as conn:
        exists = server.database_exists(conn, dbname)
    recorded = (record.row_counts if record else None) or {}
    names_ = list(recorded) or [f"{s}.{t}" for s, t in archives.data_tables(entries)]
    current: dict[str, int] = {}
    if exists:
        with server.connect(request.target.conn) as conn:
            present = {f"{s}.{t}" for s, t in server.user_tables(conn)}
            wanted = [tuple(n.split(".", 1)) for n in names_ if n in present]
            current = server.count_rows(conn, [(s, t) for s, t in wanted])
    return RestorePlan(
        source=source.label,
        kind=opened.kind,
        layers=list(opened.layers),
        target=request.target.conn.display(),
        dbname=dbname,
        target_exists=exists,
        mode=request.mode,
        jobs=_jobs(request, source, opened.kind, opened.layers),
        safety_backup=request.safety_backup and exists,
        objects=archives.object_counts(entries),
        tables=[TableCheck(n, recorded.get(n), current.get(n)) for n in names_],
    )


def _jobs(request: RestoreRequest, source: Source, kind: str, layers: Sequence[str]) -> int:
    if request.mode == "clean":
        return 1  # one transaction: pg_restore refuses --single-transaction with --jobs
    if request.jobs is not None:
        return max(1, request.jobs)
    seekable = kind == "tar" or (kind == "custom" and source.local_file is not None and not layers)
    return default_jobs() if seekable else 1


def _stamp() -> str:
    return f"{datetime.now(UTC):%Y%m%d_%H%M%S}"


def side_name(dbname: str, mark: str, stamp: str) -> str:
    """``<db><mark><stamp>``, with the database part cut so the name fits 63 bytes."""
    room = server.MAX_IDENTIFIER - len(mark) - len(stamp)
    head = dbname.encode()[:room].decode("utf-8", "ignore")
    return f"{head}{mark}{stamp}"


def run(
    settings: Settings,
    catalog: Catalog,
    request: RestoreRequest,
    *,
    progress: Callable[[str], None] | None = None,
    cancel: threading.Event | None = None,
) -> RestoreRecord:
    """Restore a backup or file into ``request.target`` in the requested mode.

    Raises:
        Refused: the environment guard or the confirmation failed (nothing touched).
        RestoreError: the restore failed; in ``swap`` and ``clean`` modes the live database
            is as it was, and no scratch database is left behind.
    """
    target = request.target
    dbname = target.conn.dbname
    check_environment(settings, target)
    if request.confirm != dbname:
        raise Refused(f"confirmation does not match: type the database name {dbname!r} to restore")
    source, record = _source(settings, catalog, request)
    tool_set = client_tools(settings)
    opened = source.open()
    kind, layers = opened.kind, list(opened.layers)
    opened.stream.close()
    jobs = _jobs(request, source, kind, layers)
    result = RestoreRecord(
        id=names.new_id(),
        backup_id=record.id if record else None,
        source=source.label,
        target=target.conn.display(),
        dbname=dbname,
        mode=request.mode,
        started_at=datetime.now(UTC),
        created_by=request.created_by,
    )
    catalog.save_restore(result)
    notify.notify(settings, "restore_started", target.name, restore=result)
    step = progress or (lambda _msg: None)
    linked = None
    try:
        with server.connect(_maintenance(target.conn)) as conn:
            exists = server.database_exists(conn, dbname)
            if exists and request.safety_backup:
                step("taking a safety backup of the live database")
                safety = backups.create(
                    settings,
                    catalog,
                    backups.BackupRequest(target=target, trigger="pre-restore"),
                )
                result.safety_backup_id = safety.id
            if request.with_files:  # the files first, the database swap last
                linked = files.restore_for_backup(
                    settings, catalog, record, decrypt=request.decrypt
                )
            if request.with_globals and record is not None and record.globals_key:
                result.warnings += _apply_globals(
                    settings, record, target.conn, tool_set, request.decrypt
                )
            known = _settings_names(conn)
            options = LoadOptions(
                jobs=jobs,
                clean=request.mode == "clean",
                no_owner=request.no_owner or request.mode == "clean",
                no_privileges=request.no_privileges or request.mode == "clean",
                single_transaction=request.mode == "clean",
            )
            steps = _Steps(conn, target, source, record, tool_set, options, known, step, cancel)
            if request.mode == "swap":
                result.previous_database = steps.swap(exists)
                if request.drop_previous and result.previous_database:
                    server.drop_database(conn, result.previous_database)
                    result.previous_database = None
            elif request.mode == "clean":
                if not exists:
                    raise RestoreError(f"database {dbname!r} does not exist: use --mode swap")
                result.warnings += steps.in_place(reset=lambda: None).warnings
            else:
                result.warnings += steps.recreate(exists).warnings
    except BaseException as exc:
        result.warnings += linked.undo() if linked is not None else []
        result.status = "failed"
        result.error = str(exc) or type(exc).__name__
        _close(catalog, result)
        notify.notify(settings, "restore_failed", target.name, restore=result, error=result.error)
        if isinstance(exc, RestoreError | Refused):
            raise
        if isinstance(exc, PgvaultError):
            if request.mode == "recreate" and result.safety_backup_id:
                outcome = f"{dbname} may be empty; restore safety backup {result.safety_backup_id}"
            elif request.mode == "recreate":
                outcome = f"{dbname} may be empty"
            else:
                outcome = "nothing changed"
            raise RestoreError(f"restore of {dbname} failed, {outcome}: {exc}") from exc
        raise
    result.status = "completed"
    _close(catalog, result)
    notify.notify(settings, "restore_finished", target.name, restore=result)
    return result


def _close(catalog: Catalog, result: RestoreRecord) -> None:
    result.finished_at = datetime.now(UTC)
    result.duration_seconds = (result.finished_at - result.started_at).total_seconds()
    catalog.save_restore(result)


def _settings_names(conn: Conn) -> set[str]:
    return {str(r[0]) for r in conn.execute("SELECT name FROM pg_settings").fetchall()}


class _IntegrityCheck:
    """Re-reads a catalogued backup's stored bytes and compares size and sha256 with the
    catalog, in a thread, so a corrupt object can never be swapped in (or loaded in place)."""

    def __init__(self, source: Source, record: BackupRecord | None) -> None:
        self._source = source
        self._record = record
        self._problem: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="sha256-check", daemon=True)

    def _run(self) -> None:
        if self._record is None or self._record.sha256 is None:
            return
        try:
            with self._source.open_raw() as raw:
                hashing = HashingReader(raw)
                hashing.drain()
            if (hashing.size, hashing.sha256) != (self._record.size_bytes, self._record.sha256):
                raise ArchiveError(
                    f"stored backup {self._record.id} is corrupt (sha256/size differ from the "
                    "catalog): nothing changed; restore another backup or copy"
                )
        except BaseException as exc:  # reported by result()
            self._problem = exc

    def start(self) -> None:
        """Begin hashing in the background."""
        self._thread.start()

    def result(self) -> None:
        """Wait for the check.

        Raises:
            ArchiveError: the stored bytes differ from the catalog.
        """
        if not self._thread.is_alive() and self._thread.ident is None:
            self._thread.start()
        self._thread.join()
        if self._problem is not None:
            raise self._problem


class _Steps:
    """The steps of one restore, sharing one maintenance connection to the target server."""

    def __init__(
        self,
        conn: Conn,
        target: DatabaseTarget,
        source: Source,
        record: BackupRecord | None,
        tool_set: Tools,
        options: LoadOptions,
        known: set[str],
        step: Callable[[str], None],
        cancel: threading.Event | None,
    ) -> None:
        self.conn = conn
        self.target = target
        self.dbname = target.conn.dbname
        self.source = source
        self.record = record
        self.tools = tool_set
        self.options = options
        self.known = known
        self.step = step
        self.cancel = cancel
        self.integrity = _IntegrityCheck(source, record)

    def _load_into(self, dbname: str, reset: Callable[[], None]) -> LoadResult:
        if self.cancel is not None and self.cancel.is_set():
            raise RestoreError("restore cancelled before loading; nothing changed")
        self.step(f"loading {self.source.label} into {dbname}")
        with tempfile.TemporaryDirectory(prefix="pgvault-restore-") as tmp:
            return load(
                self.source,
                self.target.conn.with_dbname(dbname),
                self.tools,
                self.options,
                Path(tmp),
                known_settings=lambda: self.known,
                reset=reset,
            )

    def prove(self, dbname: str) -> None:
        """Compare row counts with those recorded at backup time, then run post-restore SQL.

        Raises:
            RestoreError: a table's count differs, or the post-restore SQL failed.
        """
        self.step("checking row counts")
        recorded = (self.record.row_counts if self.record else None) or {}
        check_counts(self.target.conn.with_dbname(dbname), recorded)
        sql_file = self.target.post_restore_sql
        if sql_file is not None:
            self.step(f"running post-restore SQL {sql_file}")
            argv = psql_command(
                self.tools.psql,
                self.target.conn.with_dbname(dbname).dsn(),
                file=sql_file,
                single_transaction=True,
            )
            try:
                runner.run(argv, env=self.target.conn.child_env())
            except PgvaultError as exc:
                raise RestoreError(f"post-restore SQL {sql_file} failed: {exc}") from exc

    def swap(self, live_exists: bool) -> str | None:
        """Load into a scratch database, prove it, then swap it in; return the old live name."""
        stamp = _stamp()
        scratch = side_name(self.dbname, SCRATCH_MARK, stamp)
        like = self.dbname if live_exists else None

        def reset() -> None:
            server.drop_database(self.conn, scratch)
            server.create_database_like(self.conn, scratch, like)

        server.create_database_like(self.conn, scratch, like)
        try:
            self.integrity.start()  # hashes the stored object while it loads
            self._load_into(scratch, reset)
            self.integrity.result()
            self.prove(scratch)
            if self.cancel is not None and self.cancel.is_set():
                raise RestoreError("restore cancelled before the swap; nothing changed")
            self.step("swapping the restored database in")
            return self._rename(scratch, live_exists, stamp)
        except BaseException:
            try:
                server.drop_database(self.conn, scratch)
            except PgvaultError:
                log.exception("could not drop scratch database %s", scratch)
            raise

    def _rename(self, scratch: str, live_exists: bool, stamp: str) -> str | None:
        if not live_exists:
            server.rename_database(self.conn, scratch, self.dbname)
            return None
        previous = side_name(self.dbname, PRE_RESTORE_MARK, stamp)
        server.allow_connections(self.conn, self.dbname, False)
        try:
            server.terminate_sessions(self.conn, self.dbname)
            server.rename_database(self.conn, self.dbname, previous)
        except BaseException:
            server.allow_connections(self.conn, self.dbname, True)
            raise
        try:
            server.rename_database(self.conn, scratch, self.dbname)
        except BaseException:
            server.rename_database(self.conn, previous, self.dbname)
            server.allow_connections(self.conn, self.dbname, True)
            raise
        server.allow_connections(self.conn, previous, True)
        return previous

    def in_place(self, reset: Callable[[], None]) -> LoadResult:
        """Load into the live database (clean mode: one transaction, all or nothing)."""
        self.integrity.result()  # in place: prove the stored bytes before touching anything
        loaded = self._load_into(self.dbname, reset)
        self.prove(self.dbname)
        return loaded

    def recreate(self, live_exists: bool) -> LoadResult:
        """Drop and create the live database, then load into it."""

        def reset() -> None:
            server.drop_database(self.conn, self.dbname)
            server.create_database_like(self.conn, self.dbname, None)

        self.integrity.result()
        if live_exists:
            self.step(f"dropping {self.dbname}")
        reset()
        return self.in_place(reset)


def check_counts(info: ConnInfo, recorded: dict[str, int]) -> dict[str, int]:
    """Count the rows of every recorded table in ``info``'s database and compare.

    Returns:
        the counts found, keyed ``"schema.table"``.

    Raises:
        RestoreError: a table is missing or its count differs (names the first three).
    """
    if not recorded:
        return {}
    with server.connect(info) as conn:
        present = {f"{s}.{t}" for s, t in server.user_tables(conn)}
        missing = [name for name in recorded if name not in present]
        found = server.count_rows(
            conn,
            [tuple(n.split(".", 1)) for n in recorded if n in present],  # type: ignore[misc]
        )
    wrong = [
        f"{n}: {recorded[n]} recorded, {found[n]} restored"
        for n in found
        if found[n] != recorded[n]
    ]
    problems = [f"{n}: missing" for n in missing] + wrong
    if problems:
        raise RestoreError(
            f"restored copy does not match the backup ({len(problems)} tables): "
            + "; ".join(problems[:3])
        )
    return found


def _apply_globals(
    settings: Settings,
    record: BackupRecord,
    info: ConnInfo,
    tool_set: Tools,
    decrypt: DecryptHook | None,
) -> list[str]:
    """Run the backup's globals (roles, tablespaces) on the target server first. Existing
    roles are expected there: "already exists" errors are skipped, others become warnings."""
    store = storage.resolve(settings, record.storage)
    sealed = io.BytesIO(store.read_bytes(record.globals_key or ""))
    text = open_layers(sealed, decrypt).stream.read()
    argv = psql_command(tool_set.psql, _maintenance(info).dsn())
    argv = [a for a in argv if a != "--set=ON_ERROR_STOP=1"]
    child_warnings: list[str] = []
    with tempfile.NamedTemporaryFile("wb", suffix=".sql") as tmp:
        tmp.write(text)
        tmp.flush()
        try:
            runner.run([*argv, f"--file={tmp.name}"], env=info.child_env())
        except PgvaultError as exc:
            child_warnings.append(f"globals: {exc}")
    return [w for w in child_warnings if "already exists" not in w]


def leftovers(info: ConnInfo) -> list[str]:
    """Databases that swap restores left behind (``*_pre_restore_*``, stray scratch ones)."""
    with server.connect(_maintenance(info)) as conn:
        return server.databases_like(conn, f"({PRE_RESTORE_MARK}|{SCRATCH_MARK})[0-9_]+$")


def drop_leftover(info: ConnInfo, name: str) -> None:
    """Drop one leftover database (only names :func:`leftovers` lists).

    Raises:
        Refused: ``name`` is not a leftover of a restore.
    """
    if name not in leftovers(info):
        raise Refused(f"{name!r} is not a leftover of a pgvault restore; nothing dropped")
    with server.connect(_maintenance(info)) as conn:
        server.drop_database(conn, name)
