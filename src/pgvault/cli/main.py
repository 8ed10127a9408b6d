"""The ``pgvault`` command: parse, call the domain modules, render. No backup logic here.

Errors end in exactly one place (:func:`run`): a :class:`PgvaultError` becomes one line on
stderr and its class's exit code.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
from pathlib import Path
from typing import Annotated, Any, NoReturn, cast, get_args

import typer

from pgvault import databases, storage
from pgvault.backups import run as backups
from pgvault.catalog.records import BackupCopy, BackupRecord, BackupStatus
from pgvault.cli import ops, render, serve, wal
from pgvault.cli.common import JsonOpt, open_catalog, settings_of
from pgvault.cli.progress import BytesProgress
from pgvault.config.settings import Settings, load_settings
from pgvault.dumps.encryption import Decryptor, decryptor_from
from pgvault.errors import ConfigError, PgvaultError
from pgvault.operations import doctor, verify
from pgvault.postgres import conninfo
from pgvault.restores import run as restores

app = typer.Typer(
    help="PostgreSQL backups you can restore: streaming pg_dump, a catalog, safe restores.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
catalog_app = typer.Typer(help="The catalog of backups.", no_args_is_help=True)
app.add_typer(catalog_app, name="catalog")
ops.register(app)  # prune, schedules, scheduler, history, health
serve.register(app)  # serve, users, tokens, passkey-hash
wal.register(app)  # wal stream|push|fetch|status|mark|backups|window|prune

IdentityOpt = Annotated[
    Path | None,
    typer.Option("--identity", help="age identity file (default PGVAULT_AGE_IDENTITY_FILE)."),
]


def _decryptor(settings: Settings, identity: Path | None) -> Decryptor | None:
    return decryptor_from(identity or settings.age_identity_file)


@app.callback()
def main(
    ctx: typer.Context,
    config: Annotated[
        Path | None, typer.Option("--config", help="Config file (default: ./pgvault.toml).")
    ] = None,
    verbose: Annotated[int, typer.Option("--verbose", "-v", count=True, help="More logs.")] = 0,
) -> None:
    """Global options."""
    level = logging.WARNING - 10 * min(verbose, 2)
    fmt = "%(asctime)s " if verbose else ""
    logging.basicConfig(level=level, format=fmt + "%(levelname)s %(name)s: %(message)s")
    ctx.obj = load_settings(config)


def _labels(pairs: list[str]) -> dict[str, str]:
    labels = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"label {pair!r} is not KEY=VALUE")
        labels[key] = value
    return labels


@app.command()
def backup(
    ctx: typer.Context,
    url: Annotated[str | None, typer.Argument(help="postgresql://user@host:port/db")] = None,
    database: Annotated[
        str | None, typer.Option("--database", "-d", help="Name from the config.")
    ] = None,
    all_databases: Annotated[
        bool, typer.Option("--all", help="Every database of the server.")
    ] = False,
    dump_format: Annotated[
        str | None,
        typer.Option("--format", "-F", help="custom, plain or directory (default: see README)."),
    ] = None,
    compression: Annotated[
        str | None, typer.Option(help="zstd, gzip or none (default: see README).")
    ] = None,
    level: Annotated[int | None, typer.Option(help="Compression level.")] = None,
    jobs: Annotated[
        int | None, typer.Option("--jobs", "-j", help="Parallel pg_dump (directory).")
    ] = None,
    table: Annotated[
        list[str] | None, typer.Option("--table", "-t", help="Only these tables.")
    ] = None,
    exclude_table: Annotated[list[str] | None, typer.Option(help="Skip these tables.")] = None,
    schema: Annotated[
        list[str] | None, typer.Option("--schema", "-n", help="Only these schemas.")
    ] = None,
    label: Annotated[
        list[str] | None, typer.Option(help="KEY=VALUE metadata (repeatable).")
    ] = None,
    storage_name: Annotated[
        str | None, typer.Option("--storage", help="Target name or URL.")
    ] = None,
    timeout: Annotated[
        float | None, typer.Option(help="Kill pg_dump after this many seconds.")
    ] = None,
    no_globals: Annotated[
        bool, typer.Option("--no-globals", help="Skip roles/tablespaces.")
    ] = False,
    encrypt_to: Annotated[
        list[str] | None, typer.Option("--encrypt-to", help="age recipient age1... (repeatable).")
    ] = None,
    physical: Annotated[
        bool, typer.Option("--physical", help="A base backup (pg_basebackup) for PITR.")
    ] = False,
    incremental: Annotated[
        bool, typer.Option("--incremental", help="--physical against the previous one (17+).")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Back up a database (or --all databases of a server) into a storage target."""
    if physical or incremental:
        return wal.backup_physical(ctx, database, incremental, as_json)
    settings = settings_of(ctx)
    for option, allowed in (
        (dump_format, ("custom", "plain", "directory")),
        (compression, ("zstd", "gzip", "none")),
    ):
        if option is not None and option not in allowed:
            raise ConfigError(f"{option!r} is not one of {', '.join(allowed)}")
    catalog = open_catalog(settings)

    def request(target: databases.DatabaseTarget) -> backups.BackupRequest:
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
    else:
        for record in done:
            render.info(
                f"backup {record.id} of {record.database} completed: "
                f"{render.size(record.size_bytes)} in {record.duration_seconds:.1f} s "
                f"-> {record.storage_key}"
            )
    for name, message in failed:
        render.error(f"{name}: {message}")
    if failed:
        raise typer.Exit(8)


@app.command("list")
def list_(
    ctx: typer.Context,
    database: Annotated[str | None, typer.Option("--database", "-d")] = None,
    environment: Annotated[str | None, typer.Option()] = None,
    status: Annotated[
        str | None, typer.Option(help="running, completed, failed, interrupted, deleted")
    ] = None,
    limit: Annotated[int, typer.Option(help="At most this many rows.")] = 50,
    from_storage: Annotated[
        bool, typer.Option("--from-storage", help="Read the manifests in storage, not the catalog.")
    ] = False,
    storage_name: Annotated[
        str | None, typer.Option("--storage", help="Target for --from-storage.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """List backups, newest first (from the catalog, or --from-storage)."""
    settings = settings_of(ctx)
    if from_storage:
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
        status=cast(BackupStatus | None, status),
        limit=limit,
    )
    _render_backups(records, catalog.copies_of([r.id for r in records]), as_json)


def _render_backups(
    records: list[BackupRecord], copies_by_id: dict[str, list[BackupCopy]], as_json: bool
) -> None:
    if as_json:
        render.as_json(
            [{**r.model_dump(mode="json"), "copies": copies_by_id.get(r.id, [])} for r in records]
        )
        return
    render.table(
        None,
        (
            "id",
            "database",
            "env",
            "status",
            "trigger",
            "format",
            "size",
            "started (UTC)",
            "labels",
            "storage",
        ),
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
            )
            for r in records
        ),
    )


@app.command()
def show(ctx: typer.Context, backup_id: str, as_json: JsonOpt = False) -> None:
    """Show everything the catalog knows about one backup."""
    record = open_catalog(settings_of(ctx)).get_backup(backup_id)
    if as_json:
        render.as_json(record)
        return
    fields = record.model_dump()
    counts = fields.pop("row_counts") or {}
    objects = fields.pop("object_counts") or {}
    render.table(f"backup {record.id}", ("field", "value"), fields.items())
    if objects:
        render.table("objects", ("type", "count"), objects.items())
    if counts:
        render.table("rows at backup time", ("table", "rows"), counts.items())


@app.command()
def download(
    ctx: typer.Context,
    backup_id: str,
    output: Annotated[Path, typer.Option("--output", "-o", help="File to write.")],
    decompress: Annotated[
        bool, typer.Option(help="Remove zstd/gzip (and age): ready for pg_restore.")
    ] = False,
    identity: IdentityOpt = None,
) -> None:
    """Copy a stored backup to a local file (optionally decompressed)."""
    settings = settings_of(ctx)
    catalog = open_catalog(settings)
    record = catalog.get_backup(backup_id)
    written = backups.download(
        settings,
        catalog,
        record,
        output,
        decompress=decompress,
        decrypt=_decryptor(settings, identity),
    )
    render.info(f"wrote {render.size(written)} to {output}")


@app.command()
def delete(
    ctx: typer.Context,
    backup_id: str,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask.")] = False,
) -> None:
    """Delete a backup's stored files; its catalog row is kept as 'deleted'."""
    settings = settings_of(ctx)
    catalog = open_catalog(settings)
    record = catalog.get_backup(backup_id)
    if not yes:
        typer.confirm(f"delete backup {record.id} of {record.database}?", abort=True)
    backups.delete(settings, catalog, backup_id)
    render.info(f"backup {backup_id} deleted")


@app.command()
def stats(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Per database: completed backups, total bytes, oldest and newest."""
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


@app.command("verify")
def verify_(
    ctx: typer.Context,
    backup_id: str,
    full: Annotated[
        bool, typer.Option(help="Restore into a scratch database and compare rows.")
    ] = False,
    to: Annotated[
        str | None, typer.Option(help="Server for --full (default: the backup's own).")
    ] = None,
    identity: IdentityOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Check a backup's bytes and archive; --full also test-restores it."""
    settings = settings_of(ctx)
    catalog = open_catalog(settings)
    server_conn = None
    if full:
        server_conn = _server_of(settings, catalog.get_backup(backup_id), to)
    result = verify.verify(
        settings,
        catalog,
        backup_id,
        full=full,
        server_conn=server_conn,
        decrypt=_decryptor(settings, identity),
    )
    if as_json:
        render.as_json(result)
    else:
        render.info(f"backup {backup_id}: ok ({result.detail})")


def _server_of(settings: Settings, record: Any, url: str | None) -> conninfo.ConnInfo:
    if url is not None:
        return conninfo.parse(url)
    if record.database in settings.databases:
        return databases.from_config(settings, record.database).conn
    raise ConfigError(f"backup {record.id}'s server is not in the config: give --to URL")


@app.command()
def restore(
    ctx: typer.Context,
    backup_id: Annotated[str | None, typer.Argument(help="Backup id (see 'pgvault list').")] = None,
    file: Annotated[Path | None, typer.Option("--file", help="A dump made elsewhere.")] = None,
    to: Annotated[str | None, typer.Option("--to", help="Target database URL.")] = None,
    database: Annotated[
        str | None,
        typer.Option("--database", "-d", help="Target from config (PITR: the source)."),
    ] = None,
    mode: Annotated[str, typer.Option(help="swap (default), clean or recreate.")] = "swap",
    jobs: Annotated[int | None, typer.Option("--jobs", "-j", help="Parallel pg_restore.")] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show the plan, change nothing.")
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for the name.")] = False,
    no_safety_backup: Annotated[bool, typer.Option("--no-safety-backup")] = False,
    drop_previous: Annotated[
        bool, typer.Option("--drop-previous", help="Drop the old live DB.")
    ] = False,
    with_globals: Annotated[
        bool, typer.Option("--with-globals", help="Create roles first.")
    ] = False,
    no_owner: Annotated[bool, typer.Option("--no-owner")] = False,
    leftovers: Annotated[
        bool, typer.Option("--leftovers", help="List old *_pre_restore_* DBs.")
    ] = False,
    drop_leftover: Annotated[str | None, typer.Option(help="Drop one leftover database.")] = None,
    identity: IdentityOpt = None,
    as_json: JsonOpt = False,
    physical: Annotated[bool, typer.Option("--physical", help="PITR into --into DIR.")] = False,
    target_time: Annotated[str | None, typer.Option(help="PITR: '2026-12-01 14:32:05+00'.")] = None,
    target_lsn: Annotated[str | None, typer.Option(help="PITR: an LSN such as 0/3000028.")] = None,
    target_name: Annotated[str | None, typer.Option(help="PITR: a 'wal mark' name.")] = None,
    latest: Annotated[bool, typer.Option("--latest", help="PITR: the archive's end.")] = False,
    into: Annotated[Path | None, typer.Option(help="PITR: new data directory.")] = None,
    port: Annotated[int | None, typer.Option(help="PITR: port of the recovered server.")] = None,
) -> None:
    """Restore a backup (or --file) into a database, safely: swap mode never touches the
    live database until the restored copy is proven. With --target-time/--target-lsn/
    --target-name/--latest: point-in-time recovery, into a new cluster (--physical --into
    DIR) or of one database into --to URL."""
    when = wal.PointInTime(target_time, target_lsn, target_name, latest, into, port)
    if physical or when.wanted():
        swap = {
            "jobs": jobs,
            "no_owner": no_owner,
            "safety_backup": not no_safety_backup,
            "drop_previous": drop_previous,
        }
        return wal.restore_to_point(
            ctx,
            when,
            database=database,
            to=to,
            yes=yes,
            identity=identity,
            as_json=as_json,
            swap_options=swap,
        )
    settings = settings_of(ctx)
    if mode not in ("swap", "clean", "recreate"):
        raise ConfigError(f"--mode {mode!r} is not one of swap, clean, recreate")
    if leftovers or drop_leftover:
        server_conn = databases.resolve(settings, to, database).conn
        if drop_leftover:
            restores.drop_leftover(server_conn, drop_leftover)
            render.info(f"dropped {drop_leftover}")
        for name in restores.leftovers(server_conn):
            render.out.print(name)
        return
    catalog = open_catalog(settings)
    if to is None and database is None and backup_id is not None:
        database = catalog.get_backup(backup_id).database
        if database not in settings.databases:
            raise ConfigError("give the target with --to URL or --database NAME")
    target = databases.resolve(settings, to, database)
    request = restores.RestoreRequest(
        target=target,
        backup_id=backup_id,
        file=file,
        mode=mode,  # type: ignore[arg-type]
        jobs=jobs,
        safety_backup=not no_safety_backup,
        drop_previous=drop_previous,
        with_globals=with_globals,
        no_owner=no_owner,
        decrypt=_decryptor(settings, identity),
    )
    if dry_run:
        _show_plan(restores.plan(settings, catalog, request), as_json)
        return
    dbname = target.conn.dbname
    if not yes:
        if not sys.stdin.isatty():
            raise ConfigError(f"no terminal to confirm on: pass --yes to restore into {dbname!r}")
        typed = typer.prompt(f"this replaces database {dbname!r}; type its name to go on")
        if typed != dbname:
            raise ConfigError("the name typed does not match; nothing was restored")
    result = restores.run(
        settings, catalog, dataclasses.replace(request, confirm=dbname), progress=render.info
    )
    if as_json:
        render.as_json(result)
        return
    for warning in result.warnings:
        render.info(f"warning: {warning}")
    kept = (
        f"; previous database kept as {result.previous_database}"
        if result.previous_database
        else ""
    )
    render.info(f"restored {result.source} into {dbname} in {result.duration_seconds:.1f} s{kept}")


def _show_plan(plan: restores.RestorePlan, as_json: bool) -> None:
    if as_json:
        render.as_json(plan)
        return
    layers = "+".join(plan.layers) or "none"
    render.info(
        f"would restore {plan.source} ({plan.kind}, layers: {layers}) into {plan.target} "
        f"in {plan.mode} mode with {plan.jobs} job(s); target exists: {plan.target_exists}; "
        f"safety backup: {plan.safety_backup}"
    )
    if plan.objects:
        render.table("objects in the archive", ("type", "count"), plan.objects.items())
    render.table(
        "rows per table",
        ("table", "at backup", "in target now"),
        ((t.table, t.recorded, t.current) for t in plan.tables),
    )


@app.command("doctor")
def doctor_(ctx: typer.Context) -> None:
    """Check tools, catalog, storage and configured databases; exit 0 only if all is well."""
    checks = doctor.run_checks(settings_of(ctx))
    render.table(
        None,
        ("check", "ok", "detail"),
        ((c.name, "yes" if c.ok else "NO", c.detail) for c in checks),
    )
    if not all(c.ok for c in checks):
        raise typer.Exit(1)


@catalog_app.command("rebuild")
def catalog_rebuild(
    ctx: typer.Context,
    storage_name: Annotated[
        str | None, typer.Option("--storage", help="Target name or URL.")
    ] = None,
) -> None:
    """Rebuild the catalog from the manifests stored beside each backup."""
    settings = settings_of(ctx)
    records = backups.rebuild_catalog(
        open_catalog(settings), storage.resolve(settings, storage_name)
    )
    where = storage_name or settings.default_storage_location
    render.info(f"catalog rebuilt: {len(records)} backups from {where}")


def run() -> NoReturn:
    """Console-script entry point: click/typer handle usage errors (exit 2) and --help; a
    PgvaultError becomes one line on stderr and its class's exit code."""
    try:
        app()  # standalone mode: ends with SystemExit
    except PgvaultError as exc:
        render.error(str(exc))
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        render.error("interrupted")
        sys.exit(130)
    sys.exit(0)
