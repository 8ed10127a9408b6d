"""Planning a backup: what will be dumped, how, and where — decided before anything runs.

:func:`probe` asks the server and the installed tools what they can do (the only I/O here);
:func:`plan` is pure: from a :class:`BackupRequest`, the database's settings and those facts it
chooses the format, the compression and who applies it, the storage targets, the storage key
from the name template in its time zone, the labels and the encryption recipients. The same
plan is shown by previews and executed by :func:`pgvault.backups.run.run`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from pgvault import runtime
from pgvault.backups import naming
from pgvault.catalog.records import BackupRecord, Trigger
from pgvault.config.settings import DumpFormat, Settings
from pgvault.databases import DatabaseTarget
from pgvault.dumps.encryption import parse_recipients
from pgvault.errors import ConfigError
from pgvault.postgres import server, tools


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
class ServerFacts:
    """What :func:`probe` found: the server's version and role, and the tools to use."""

    major: int
    version: str
    superuser: bool
    pg_dump: tools.Tool
    pg_restore: tools.Tool


@dataclass(frozen=True)
class CompressionPlan:
    """Who compresses: ``pg_dump_compress`` is pg_dump's ``--compress`` value, ``stream`` the
    method pgvault applies to the stream (``none`` when pg_dump compresses)."""

    pg_dump_compress: str | None
    stream: str
    compressed_by: str | None


@dataclass(frozen=True)
class BackupPlan:
    """Everything a backup run needs, decided up front (nothing here touches a server).

    ``storage`` is the first target (name or URL), ``copies`` the targets that get a second
    copy after it completes; ``key`` the storage key; times are aware UTC.
    """

    request: BackupRequest
    facts: ServerFacts
    backup_id: str
    started: datetime
    dump_format: DumpFormat
    method: str
    level: int | None
    jobs: int
    compression: CompressionPlan
    recipients: tuple[str, ...]
    storage: str | None
    copies: tuple[str, ...]
    key: str
    labels: dict[str, str]
    timeout: float | None
    notes: tuple[str, ...] = ()

    @property
    def target(self) -> DatabaseTarget:
        """The database backed up."""
        return self.request.target


def probe(settings: Settings, target: DatabaseTarget) -> ServerFacts:
    """Connect to ``target`` and choose pg_dump and pg_restore for its server's version.

    Raises:
        ConnectionFailed: the server cannot be reached.
        ToolError: no suitable pg_dump or pg_restore is installed.
    """
    with server.connect(target.conn) as conn:
        major, version = server.server_version(conn)
        superuser = server.is_superuser(conn)
    pg_dump = tools.choose("pg_dump", major, settings.bin_dir)
    beside = pg_dump.path.parent / "pg_restore"  # same build: reads what this pg_dump writes
    if beside.is_file() and os.environ.get(tools.env_override_name("pg_restore")) is None:
        pg_restore = tools.probe("pg_restore", beside)
    else:
        pg_restore = tools.choose("pg_restore", pg_dump.major, settings.bin_dir)
    return ServerFacts(major, version, superuser, pg_dump, pg_restore)


def choose_storage(
    settings: Settings, target: DatabaseTarget, explicit: str | None = None
) -> tuple[str | None, tuple[str, ...]]:
    """The storage target a backup of ``target`` goes to, and the targets that get copies.

    An explicit target (name or URL) gets the backup alone; otherwise the database's
    ``storage`` list (first: the backup, the others: copies), else the default target
    (``None``: :func:`pgvault.storage.resolve` picks it).
    """
    if explicit is not None:
        return explicit, ()
    configured = list(target.settings.storage)
    if not configured:
        return None, ()
    return configured[0], tuple(configured[1:])


def storage_key(
    settings: Settings,
    target: DatabaseTarget,
    *,
    backup_id: str,
    started: datetime,
    dump_format: str,
    ext: str,
    trigger: str,
) -> str:
    """The storage key of a backup of ``target``, from its own name template and time zone
    (else the defaults): the same for pg_dump backups and uploads.

    Raises:
        ConfigError: a bad template or time zone.
        StorageError: the template gives an unsafe key.
    """
    db = target.settings
    return naming.storage_key(
        db.name_template or settings.name_template,
        db.timezone or settings.timezone,
        backup_id=backup_id,
        started=started,
        database=target.name,
        dbname=target.conn.dbname,
        environment=target.environment,
        dump_format=dump_format,
        ext=ext,
        trigger=trigger,
    )


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

    * pg_dump built with zstd (>= 16): ``custom`` archive compressed by pg_dump with zstd
      level 1 (``--compress=zstd:1``: 0.20x the time of ``pg_dump -Fc``'s gzip-6 and smaller
      than zstd:3 on pg_dump's small blocks), streamed straight into storage;
    * otherwise: ``directory`` archive, ``-j`` one worker per core (at most 4), gzip level 1
      by pg_dump (stored as a tar); a zstd stream would restore only serially (1.17x).

    Whatever the user sets explicitly is kept; only the unset parts are filled in.
    """
    workers = max(1, min(4, os.cpu_count() or 1))
    if dump_format is None and method is None:
        if tools.supports_compression(pg_dump, "zstd"):
            return "custom", "zstd", 1 if level is None else level, 1 if jobs is None else jobs
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


def plan(
    settings: Settings, request: BackupRequest, facts: ServerFacts, *, started: datetime
) -> BackupPlan:
    """Decide the whole backup (pure: no connection, no clock but ``started``).

    Raises:
        ConfigError: an unknown format or compression, a bad recipient, or a bad name
            template.
        StorageError: the name template gives an unsafe key.
    """
    target = request.target
    db = target.settings
    asked_format = request.dump_format or db.format
    asked_method = request.compression or db.compression
    for option, allowed in (
        (asked_format, ("custom", "plain", "directory")),
        (asked_method, ("zstd", "gzip", "none")),
    ):
        if option is not None and option not in allowed:
            raise ConfigError(f"{option!r} is not one of {', '.join(allowed)}")
    level = request.level if request.level is not None else db.level
    recipients = tuple(request.recipients or db.encrypt_to or settings.age_recipients)
    parse_recipients(recipients)  # refuse bad recipients before anything starts
    dump_format, method, level, jobs = default_form(
        facts.pg_dump, asked_format, asked_method, level, request.jobs
    )
    compression = plan_compression(dump_format, method, level, facts.pg_dump, settings.compress_in)
    notes: tuple[str, ...] = ()
    if asked_format is None and asked_method is None and dump_format == "directory":
        notes = (gzip_only_note(facts.pg_dump),)
    backup_id = runtime.new_id(started)
    first, copies = choose_storage(settings, target, request.storage)
    ext = naming.extension(dump_format, method, compression.compressed_by)
    key = storage_key(
        settings,
        target,
        backup_id=backup_id,
        started=started,
        dump_format=dump_format,
        ext=ext + (".age" if recipients else ""),
        trigger=request.trigger,
    )
    return BackupPlan(
        request=request,
        facts=facts,
        backup_id=backup_id,
        started=started,
        dump_format=dump_format,  # type: ignore[arg-type]
        method=method,
        level=level,
        jobs=jobs,
        compression=compression,
        recipients=recipients,
        storage=first,
        copies=copies,
        key=key,
        labels=naming.check_labels({**db.labels, **request.labels}),
        timeout=request.timeout if request.timeout is not None else settings.backup_timeout,
        notes=notes,
    )


def gzip_only_note(pg_dump: tools.Tool) -> str:
    """The line said (``doctor``, each backup at INFO) when pg_dump cannot compress with
    zstd and the default falls back to a gzip-1 directory archive."""
    return (
        f"pg_dump {pg_dump.version} ({pg_dump.path}) has no zstd: backing up as a gzip-1 "
        "directory archive; a zstd-capable pg_dump (pgvault[bundled-tools] on Python >= 3.12, "
        "or PostgreSQL >= 16 client packages built with zstd) would be about 3x faster"
    )


def new_record(plan: BackupPlan, storage_name: str) -> BackupRecord:
    """The ``running`` catalog row of a planned backup stored on ``storage_name``."""
    request, target = plan.request, plan.target
    return BackupRecord(
        id=plan.backup_id,
        database=target.name,
        dbname=target.conn.dbname,
        server=target.conn.server_key(),
        environment=target.environment,
        trigger=request.trigger,
        format=plan.dump_format,
        compression=plan.method,
        compression_level=plan.level,
        encrypted=bool(plan.recipients),
        compressed_by=plan.compression.compressed_by,
        tables=list(request.tables),
        exclude_tables=list(request.exclude_tables),
        schemas=list(request.schemas),
        labels=plan.labels,
        storage=storage_name,
        storage_key=plan.key,
        server_version=plan.facts.version,
        pg_dump_version=plan.facts.pg_dump.version,
        started_at=plan.started,
        created_by=request.created_by,
        runner=runtime.runner_id(),
    )
