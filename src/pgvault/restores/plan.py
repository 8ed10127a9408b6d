"""Planning a restore: which backup or file, into which database, how — before anything runs.

:func:`plan` opens the source (a catalogued backup or a file), reads what the archive holds
when a preview is asked for, and compares each table's rows at backup time with the target's
rows now; its :class:`RestorePreview` is what ``--dry-run``, the API's preview and the web
UI's restore wizard show, and the :class:`RestorePlan` is what :func:`pgvault.restores.run`
executes. :func:`resolve_target` is the one place a restore's target database is chosen.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from pgvault import databases, workdirs
from pgvault.backups import copies
from pgvault.catalog import Catalog
from pgvault.catalog.records import BackupRecord
from pgvault.config.settings import RestoreMode, Settings
from pgvault.databases import DatabaseTarget
from pgvault.dumps import header, toc, wholeness
from pgvault.dumps.layers import DecryptHook, OpenedDump
from pgvault.dumps.psqlguard import supports_restrict
from pgvault.errors import ConfigError, NotFound, RestoreError
from pgvault.postgres import server, tools
from pgvault.restores import policy
from pgvault.restores.integrity import fetchable
from pgvault.restores.loading import Source, Tools, default_jobs


@dataclass(frozen=True)
class RestoreRequest:
    """One restore: what (a backup id or a file), where, how, and the caller's answers to
    the restore policy (``confirm``: the target's name typed; ``passkey``).

    ``file_by_pgvault`` says ``file`` is a dump this process wrote itself (point-in-time
    recovery into one database dumps the database from the cluster pgvault recovered from
    its own checksummed base backup): it is trusted like a backup. No shell sets it.
    """

    target: DatabaseTarget
    backup_id: str | None = None
    file: Path | None = None
    mode: RestoreMode = "swap"
    jobs: int | None = None
    confirm: str | None = None
    passkey: str | None = None
    safety_backup: bool = True
    drop_previous: bool = False
    with_globals: bool = False
    no_owner: bool = False
    no_privileges: bool = False
    decrypt: DecryptHook | None = None
    created_by: str | None = None
    with_files: bool = False
    as_superuser: bool = False
    client: str | None = None
    file_by_pgvault: bool = False


@dataclass
class TableCheck:
    """A table's rows: recorded at backup time and found in the target now."""

    table: str
    recorded: int | None
    current: int | None


@dataclass
class RestorePreview:
    """What a restore would do, in words and numbers (rendered by every shell; holds no
    secret): the source and its layers, the target, the mode, the archive's objects by
    type, rows per table at backup time beside the target's now, and the guards that apply.
    """

    source: str
    backup_id: str | None
    kind: str
    layers: list[str]
    target: str
    dbname: str
    target_exists: bool
    mode: str
    jobs: int
    safety_backup: bool
    guards: list[str] = field(default_factory=list)
    objects: dict[str, int] = field(default_factory=dict)
    tables: list[TableCheck] = field(default_factory=list)


@dataclass(frozen=True)
class RestorePlan:
    """A restore ready to run: the request, its opened source, the catalogued backup (None
    for a file), the client tools, the preview, the target server's major version and that
    of the pg_dump that wrote the dump."""

    request: RestoreRequest
    source: Source
    record: BackupRecord | None
    tools: Tools
    preview: RestorePreview
    server_major: int | None = None
    dump_major: int | None = None

    @property
    def target(self) -> DatabaseTarget:
        """The database restored into."""
        return self.request.target

    @property
    def untrusted(self) -> bool:
        """Whether the SQL came from outside pgvault (a file, an upload): it then runs with
        the target owner's privileges (:mod:`pgvault.restores.privileges`)."""
        if self.record is None:
            return not (self.request.file is not None and self.request.file_by_pgvault)
        return self.record.trigger == "upload"


def client_tools(
    settings: Settings, server_major: int | None = None, dump_major: int | None = None
) -> Tools:
    """The pg_restore and psql a restore into a server of ``server_major`` uses, by the rule
    of :func:`pgvault.postgres.tools.rank`: the target's own major first, then the newest
    newer one; pg_restore at least as new as the pg_dump that wrote the archive
    (``dump_major``: an older pg_restore refuses a newer archive version). Whether that psql
    has restricted mode is noted (replaying SQL from outside needs it).

    Raises:
        ToolError: no fitting pg_restore or psql is installed.
    """
    psql = tools.choose("psql", server_major, settings.bin_dir)
    return Tools(
        pg_restore=tools.choose(
            "pg_restore", server_major, settings.bin_dir, at_least=dump_major or 0
        ).path,
        psql=psql.path,
        psql_restrict=supports_restrict(psql.major, psql.minor),
    )


def dump_major(opened: OpenedDump, record: BackupRecord | None) -> int | None:
    """The major version of the pg_dump that wrote a dump: from its header, else from the
    catalog row."""
    found = header.dump_versions(opened.head, opened.kind)
    if found is not None and found.pg_dump_major is not None:
        return found.pg_dump_major
    if record is not None and record.pg_dump_version:
        return header.DumpVersions(record.pg_dump_version, None).pg_dump_major
    return None


def resolve_target(
    settings: Settings,
    *,
    record: BackupRecord | None,
    url: str | None = None,
    database: str | None = None,
) -> DatabaseTarget:
    """The database a restore goes into: ``url`` or the configured ``database``, else the
    configured database the backup ``record`` was taken from.

    Raises:
        ConfigError: no target can be chosen (the backup's database is not configured), or
            both a URL and a name were given.
    """
    if url is None and database is None and record is not None:
        if record.database not in settings.databases:
            raise ConfigError(
                f"backup {record.id}'s database {record.database!r} is not in the config: "
                "name the target database"
            )
        database = record.database
    return databases.resolve(settings, url, database)


def open_source(
    settings: Settings, catalog: Catalog, request: RestoreRequest
) -> tuple[Source, BackupRecord | None]:
    """The dump to load: a catalogued completed backup (from its first intact copy) or a
    local file.

    Raises:
        RestoreError: neither or both given, or the backup is not completed.
        NotFound: unknown id, missing file or no intact copy.
    """
    if (request.backup_id is None) == (request.file is None):
        raise RestoreError("give either a backup id or a file to restore")
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

    local = store.local_path(record.storage_key)
    return Source(record.id, open_object, local, request.decrypt), record


def plan(
    settings: Settings, catalog: Catalog, request: RestoreRequest, *, preview: bool = True
) -> RestorePlan:
    """Plan a restore without changing anything.

    With ``preview`` the archive's TOC is read (objects by type) and, per table, the row
    count recorded at backup time is put beside the target's current count; without it only
    what running needs is looked at (the source's layers, whether the target exists).

    Raises:
        NotFound, RestoreError: as for :func:`open_source`.
        ArchiveError: the source is not a dump; a file is not whole (cut short) or holds
            psql meta-commands.
        ConnectionFailed: the target's server cannot be reached.
        ToolError: no pg_restore or psql.
    """
    source, record = open_source(settings, catalog, request)
    if record is None:
        # a file from outside: whole, and (plain SQL) free of psql meta-commands, before
        # anything is planned on it (the catalog's sha256 vouches for stored backups)
        wholeness.check_opened(source.open_raw(), source.decrypt)
    conn_info = request.target.conn
    with server.connect(conn_info.with_dbname("postgres")) as conn:
        exists = server.database_exists(conn, conn_info.dbname)
        server_major, _version = server.server_version(conn)
    opened = source.open()
    kind, layers = opened.kind, [str(layer) for layer in opened.layers]
    written_by = dump_major(opened, record)
    tool_set = client_tools(settings, server_major, written_by)
    entries: list[toc.TocEntry] = []
    with opened.stream as stream:
        if preview:
            with workdirs.workdir(settings.home, "plan") as tmp:
                entries = toc.toc_of_stored(
                    tool_set.pg_restore, stream, kind, tmp, source.seekable_file(opened)
                )
    found = RestorePreview(
        source=source.label,
        backup_id=record.id if record else None,
        kind=kind,
        layers=layers,
        target=conn_info.display(),
        dbname=conn_info.dbname,
        target_exists=exists,
        mode=request.mode,
        jobs=_jobs(request, source, kind, layers, fetchable(source, record, settings.home)),
        safety_backup=request.safety_backup and exists,
        guards=policy.applicable(settings, request.target),
    )
    if preview:
        found.objects = toc.object_counts(entries)
        found.tables = _table_checks(request.target, record, entries, exists)
    return RestorePlan(request, source, record, tool_set, found, server_major, written_by)


def _table_checks(
    target: DatabaseTarget,
    record: BackupRecord | None,
    entries: list[toc.TocEntry],
    exists: bool,
) -> list[TableCheck]:
    recorded = (record.row_counts if record else None) or {}
    names = list(recorded) or [f"{s}.{t}" for s, t in toc.data_tables(entries)]
    current: dict[str, int] = {}
    if exists:
        with server.connect(target.conn) as conn:
            present = {f"{s}.{t}" for s, t in server.user_tables(conn)}
            wanted = [n.split(".", 1) for n in names if n in present]
            current = server.count_rows(conn, [(s, t) for s, t in wanted])
    return [TableCheck(n, recorded.get(n), current.get(n)) for n in names]


def _jobs(
    request: RestoreRequest, source: Source, kind: str, layers: Sequence[str], fetched: bool
) -> int:
    """pg_restore's ``--jobs``: 1 in clean mode, else as asked, else the cores (at most 4)
    for an archive pg_restore can seek in: a directory archive, a local custom file, or a
    stored custom archive the load downloads first (``fetched``: a swap restore does)."""
    if request.mode == "clean":
        return 1  # one transaction: pg_restore refuses --single-transaction with --jobs
    if request.jobs is not None:
        return max(1, request.jobs)
    local = source.local_file is not None or (fetched and request.mode == "swap")
    seekable = kind == "tar" or (kind == "custom" and local and not layers)
    return default_jobs() if seekable else 1
