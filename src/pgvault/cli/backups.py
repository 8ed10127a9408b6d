"""Everyday backup commands: ``backup``, ``list``, ``show``, ``verify``, ``download``,
``delete``, ``stats``. Each parses, calls one domain function, renders."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, get_args

import typer

from pgvault.cli import render
from pgvault.cli.common import (
    IdentityOpt,
    JsonOpt,
    actor,
    add_command,
    decryptor,
    open_catalog,
    settings_of,
)
from pgvault.errors import EXIT_CODES, BackupError, ConfigError

if TYPE_CHECKING:
    from pgvault import databases
    from pgvault.backups import BackupRequest
    from pgvault.catalog.records import BackupCopy, BackupRecord
    from pgvault.config.settings import Settings
    from pgvault.postgres.conninfo import ConnInfo

DatabaseOpt = Annotated[
    str | None, typer.Option("--database", "-d", help="A database named in the config.")
]


def _labels(pairs: list[str]) -> dict[str, str]:
    labels = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"label {pair!r} is not KEY=VALUE")
        labels[key] = value
    return labels


UrlOpt = Annotated[
    str | None, typer.Argument(help="postgresql://user@host:port/db (no password in it).")
]

AllDatabasesOpt = Annotated[
    bool, typer.Option("--all", help="Every database of the server at URL.")
]

DumpFormatOpt = Annotated[
    str | None,
    typer.Option(
        "--format",
        "-F",
        help="custom, plain or directory. Default: custom compressed by pg_dump with "
        "zstd when pg_dump can, else directory with gzip level 1 (parallel dump and "
        "restore).",
    ),
]

CompressionOpt = Annotated[
    str | None, typer.Option(help="zstd, gzip or none (default: as for --format).")
]

LevelOpt = Annotated[int | None, typer.Option(help="Compression level.")]

JobsOpt = Annotated[
    int | None, typer.Option("--jobs", "-j", help="Parallel pg_dump workers (directory).")
]

TableOpt = Annotated[
    list[str] | None, typer.Option("--table", "-t", help="Only this table (repeatable).")
]

ExcludeTableOpt = Annotated[list[str] | None, typer.Option(help="Skip this table (repeatable).")]

SchemaOpt = Annotated[
    list[str] | None, typer.Option("--schema", "-n", help="Only this schema (repeatable).")
]

LabelOpt = Annotated[list[str] | None, typer.Option(help="KEY=VALUE metadata (repeatable).")]

StorageNameOpt = Annotated[
    str | None, typer.Option("--storage", help="Storage target name or URL.")
]

TimeoutOpt = Annotated[float | None, typer.Option(help="Stop pg_dump after this many seconds.")]

NoGlobalsOpt = Annotated[
    bool, typer.Option("--no-globals", help="Do not store roles and tablespaces beside it.")
]

EncryptToOpt = Annotated[
    list[str] | None, typer.Option("--encrypt-to", help="age recipient age1... (repeatable).")
]


def backup(
    ctx: typer.Context,
    url: UrlOpt = None,
    database: DatabaseOpt = None,
    all_databases: AllDatabasesOpt = False,
    dump_format: DumpFormatOpt = None,
    compression: CompressionOpt = None,
    level: LevelOpt = None,
    jobs: JobsOpt = None,
    table: TableOpt = None,
    exclude_table: ExcludeTableOpt = None,
    schema: SchemaOpt = None,
    label: LabelOpt = None,
    storage_name: StorageNameOpt = None,
    timeout: TimeoutOpt = None,
    no_globals: NoGlobalsOpt = False,
    encrypt_to: EncryptToOpt = None,
    physical: Annotated[
        bool, typer.Option("--physical", help="A base backup (pg_basebackup) for PITR.")
    ] = False,
    incremental: Annotated[
        bool, typer.Option("--incremental", help="--physical against the previous one (17+).")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Back up a database into a storage target. With --all, every database of a server;
    with --physical, a base backup for point-in-time recovery."""
    if physical or incremental:
        from pgvault.cli import wal

        return wal.backup_physical(ctx, database, incremental, as_json)
    from pgvault import backups, databases
    from pgvault.cli import files as files_cli
    from pgvault.cli.progress import BytesProgress
    from pgvault.postgres import conninfo

    settings = settings_of(ctx)
    catalog = open_catalog(settings)

    def request(target: databases.DatabaseTarget) -> BackupRequest:
        return backups.BackupRequest(
            target=target,
            dump_format=dump_format,
            compression=compression,
            level=level,
            jobs=jobs,
            tables=table or [],
            exclude_tables=exclude_table or [],
            schemas=schema or [],
            labels=_labels(label or []),
            storage=storage_name,
            timeout=timeout,
            with_globals=not no_globals,
            recipients=encrypt_to or [],
        )

    with BytesProgress(enabled=not as_json) as progress:
        if all_databases:
            if url is None:
                raise ConfigError("--all needs the server's URL")
            done, failed = backups.create_all(
                settings, catalog, conninfo.parse(url), request, progress=progress.update
            )
        else:
            target = databases.resolve(settings, url, database)
            done = [backups.create(settings, catalog, request(target), progress=progress.update)]
            failed = []
    if as_json:
        render.as_json(done if all_databases else done[0])
    for record in [] if as_json else done:
        render.info(
            f"backup {record.id} of {record.database} completed: "
            f"{render.size(record.size_bytes)} in {record.duration_seconds:.1f} s "
            f"-> {record.storage_key}"
        )
    files_failed = files_cli.report_linked(catalog, done, as_json)
    for name, message in failed:
        render.error(f"{name}: {message}")
    if failed or files_failed:
        raise typer.Exit(EXIT_CODES[BackupError])


def list_(
    ctx: typer.Context,
    database: DatabaseOpt = None,
    environment: Annotated[str | None, typer.Option(help="Only this environment.")] = None,
    status: Annotated[
        str | None,
        typer.Option(help="running, completed, failed, interrupted or deleted."),
    ] = None,
    limit: Annotated[int, typer.Option(help="At most this many rows.")] = 50,
    from_storage: Annotated[
        bool, typer.Option("--from-storage", help="Read the manifests in storage, not the catalog.")
    ] = False,
    storage_name: Annotated[
        str | None, typer.Option("--storage", help="Storage target for --from-storage.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """List backups, newest first. From the catalog, or with --from-storage from the
    manifests in a storage target."""
    from pgvault.catalog.records import BackupStatus
    from pgvault.cli import files as files_cli

    settings = settings_of(ctx)
    if from_storage:
        from pgvault import backups, storage

        found = backups.stored_manifests(storage.resolve(settings, storage_name))
        chosen = [
            r
            for r in reversed(found)
            if (database is None or r.database == database)
            and (environment is None or r.environment == environment)
        ][:limit]
        _render_backups(chosen, {}, as_json)
        return
    if status is not None and status not in get_args(BackupStatus):
        raise ConfigError(f"--status {status!r} is not one of {', '.join(get_args(BackupStatus))}")
    catalog = open_catalog(settings)
    records = catalog.list_backups(
        database=database,
        environment=environment,
        status=status,  # type: ignore[arg-type]
        limit=limit,
    )
    if not records and not as_json:
        what = "no backups match" if database or environment or status else "no backups yet"
        render.info(f"{what}: make one with 'pgvault backup postgresql://user@host/db'")
        return
    linked = files_cli.linked_summary(catalog, [r.id for r in records])
    _render_backups(records, catalog.copies_of([r.id for r in records]), as_json, linked)


def _render_backups(
    records: list[BackupRecord],
    copies_by_id: dict[str, list[BackupCopy]],
    as_json: bool,
    linked: dict[str, str] | None = None,
) -> None:
    linked = linked or {}
    if as_json:
        render.as_json(
            [
                {
                    **r.model_dump(mode="json"),
                    "copies": copies_by_id.get(r.id, []),
                    "files": linked.get(r.id),
                }
                for r in records
            ]
        )
        return
    names = "id database env status trigger format size started_(UTC) labels storage files"
    columns = names.split()
    render.table(
        None,
        [c.replace("_", " ") for c in columns],
        (
            (
                r.id,
                r.database,
                r.environment,
                r.status,
                r.trigger,
                r.format,
                render.size(r.size_bytes),
                render.when(r.started_at),
                ",".join(f"{k}={v}" for k, v in r.labels.items()),
                " + ".join(
                    [r.storage] + [f"{c.storage} ({c.status})" for c in copies_by_id.get(r.id, [])]
                ),
                linked.get(r.id),
            )
            for r in records
        ),
    )


def show(
    ctx: typer.Context,
    backup_id: Annotated[str, typer.Argument(help="Backup id, 'latest' or file name.")],
    database: DatabaseOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show everything the catalog knows about one backup."""
    from pgvault.cli import files as files_cli

    catalog = open_catalog(settings_of(ctx))
    record = catalog.find_backup(backup_id, database=database)
    if as_json:
        linked = files_cli.linked_summary(catalog, [record.id]).get(record.id)
        render.as_json({**record.model_dump(mode="json"), "files": linked})
        return
    fields = record.model_dump()
    counts = fields.pop("row_counts") or {}
    objects = fields.pop("object_counts") or {}
    render.table(f"backup {record.id}", ("field", "value"), fields.items())
    if objects:
        render.table("objects", ("type", "count"), objects.items())
    if counts:
        render.table("rows at backup time", ("table", "rows"), counts.items())
    files_cli.show_linked(catalog, record.id)


def verify_(
    ctx: typer.Context,
    backup_id: Annotated[str, typer.Argument(help="Backup id, 'latest' or file name.")],
    full: Annotated[
        bool, typer.Option(help="Also restore into a scratch database and compare rows.")
    ] = False,
    to: Annotated[
        str | None,
        typer.Option(help="Server for --full, as a URL (default: the backup's own)."),
    ] = None,
    database: DatabaseOpt = None,
    identity: IdentityOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Check a backup's stored bytes and archive. --full also test-restores it."""
    from pgvault.operations import verify

    settings = settings_of(ctx)
    catalog = open_catalog(settings)
    record = catalog.find_backup(backup_id, database=database)
    server_conn = _server_of(settings, record, to) if full else None
    result = verify.verify(
        settings,
        catalog,
        record.id,
        full=full,
        server_conn=server_conn,
        decrypt=decryptor(settings, identity),
    )
    if as_json:
        render.as_json(result)
    else:
        render.info(f"backup {record.id}: ok ({result.detail})")


def _server_of(settings: Settings, record: BackupRecord, url: str | None) -> ConnInfo:
    from pgvault import databases
    from pgvault.postgres import conninfo

    if url is not None:
        return conninfo.parse(url)
    if record.database in settings.databases:
        return databases.from_config(settings, record.database).conn
    raise ConfigError(f"backup {record.id}'s server is not in the config: give --to URL")


def download(
    ctx: typer.Context,
    backup_id: Annotated[str, typer.Argument(help="Backup id, 'latest' or file name.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="File to write.")],
    decompress: Annotated[
        bool, typer.Option(help="Remove zstd/gzip (and age): ready for pg_restore or psql.")
    ] = False,
    database: DatabaseOpt = None,
    identity: IdentityOpt = None,
) -> None:
    """Copy a stored backup to a local file (optionally decompressed)."""
    from pgvault import backups
    from pgvault.cli.progress import BytesProgress

    settings = settings_of(ctx)
    catalog = open_catalog(settings)
    record = catalog.find_backup(backup_id, database=database)
    with BytesProgress() as progress:
        written = backups.download(
            settings,
            catalog,
            record,
            output,
            decompress=decompress,
            decrypt=decryptor(settings, identity),
            progress=progress.update,
        )
    render.info(f"wrote {render.size(written)} to {output}")


def delete(
    ctx: typer.Context,
    backup_id: Annotated[str, typer.Argument(help="Backup id or file name.")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask.")] = False,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Delete even one of the minimum_redundancy newest completed backups "
            "(written to the audit log).",
        ),
    ] = False,
) -> None:
    """Delete a backup's stored files and copies. Its catalog row stays, marked deleted; one
    of the minimum_redundancy newest completed backups of its database needs --force."""
    from pgvault.operations import prune

    settings = settings_of(ctx)
    catalog = open_catalog(settings)
    record = catalog.find_backup(backup_id)
    if not yes:
        typer.confirm(f"delete backup {record.id} of {record.database}?", abort=True)
    prune.delete_backup(settings, catalog, record.id, force=force, actor=actor())
    render.info(f"backup {record.id} deleted")


def stats(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Totals per database. Completed backups, bytes, oldest and newest."""
    rows = open_catalog(settings_of(ctx)).stats()
    if as_json:
        render.as_json(rows)
        return
    render.table(
        None,
        ("database", "backups", "total", "oldest (UTC)", "newest (UTC)"),
        (
            (
                r["database"],
                r["count"],
                render.size(r["total_bytes"]),
                render.when(r["oldest"]),
                render.when(r["newest"]),
            )
            for r in rows
        ),
    )


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""
    add_command(app, "backup", backup)
    add_command(app, "list", list_)
    add_command(app, "show", show)
    add_command(app, "verify", verify_)
    add_command(app, "download", download)
    add_command(app, "delete", delete)
    add_command(app, "stats", stats)
