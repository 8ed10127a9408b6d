"""``pgvault restore``: plan, confirm, run — the domain's restore policy decides; this shell
only asks the person at the terminal for the answers (the database name, the passkey)."""

from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from pgvault.cli import render
from pgvault.cli.common import (
    IdentityOpt,
    JsonOpt,
    add_command,
    decryptor,
    open_catalog,
    settings_of,
)
from pgvault.errors import ConfigError

if TYPE_CHECKING:
    from pgvault import restores
    from pgvault.catalog import Catalog
    from pgvault.catalog.records import RestoreRecord
    from pgvault.config.settings import Settings
    from pgvault.databases import DatabaseTarget

PASSKEY_ENV = "PGVAULT_RESTORE_PASSKEY"


BackupIdOpt = Annotated[
    str | None,
    typer.Argument(help="Backup id, 'latest' (with --database) or a backup's file name."),
]

FileOpt = Annotated[
    Path | None, typer.Option("--file", help="A dump made elsewhere, instead of a backup.")
]

ToOpt = Annotated[str | None, typer.Option("--to", help="Target database URL.")]

DatabaseOpt = Annotated[
    str | None,
    typer.Option(
        "--database",
        "-d",
        help="A database named in the config: the target (unless --to) and, for "
        "'latest' and point-in-time recovery, the source.",
    ),
]

ModeOpt = Annotated[
    str,
    typer.Option(
        help="swap (restore beside the live database, then rename it in), clean (in "
        "place, one transaction) or recreate (drop, create, load)."
    ),
]

JobsOpt = Annotated[int | None, typer.Option("--jobs", "-j", help="Parallel pg_restore.")]

DryRunOpt = Annotated[bool, typer.Option("--dry-run", help="Show the plan, change nothing.")]

YesOpt = Annotated[
    bool, typer.Option("--yes", "-y", help="Confirm without typing the database name.")
]

PasskeyOpt = Annotated[
    bool,
    typer.Option(
        "--passkey",
        help=f"Ask for the database's restore passkey (hidden); scripts set {PASSKEY_ENV}."
        " Asked anyway on a terminal when the database has one.",
    ),
]

NoSafetyBackupOpt = Annotated[
    bool, typer.Option("--no-safety-backup", help="Skip the backup of the live database.")
]

DropPreviousOpt = Annotated[
    bool, typer.Option("--drop-previous", help="Drop the old live database after a swap.")
]

WithGlobalsOpt = Annotated[
    bool, typer.Option("--with-globals", help="Create the backup's roles first.")
]

NoOwnerOpt = Annotated[bool, typer.Option("--no-owner", help="Do not restore object owners.")]

LeftoversOpt = Annotated[
    bool, typer.Option("--leftovers", help="List old *_pre_restore_* databases.")
]

DropLeftoverOpt = Annotated[
    str | None, typer.Option(help="Drop one database that --leftovers lists.")
]

AsSuperuserOpt = Annotated[
    bool,
    typer.Option(
        "--as-superuser",
        help="Run the SQL of --file as the connecting superuser instead of the target "
        "database's owner (only for a file you trust: it can run anything).",
    ),
]

RepairOpt = Annotated[
    bool,
    typer.Option(
        "--repair",
        help="Repair restores a dead pgvault left unfinished (every start does this too).",
    ),
]


WithFilesOpt = Annotated[
    bool, typer.Option("--with-files", help="Restore the linked file snapshots first.")
]


def restore(
    ctx: typer.Context,
    backup_id: BackupIdOpt = None,
    file: FileOpt = None,
    to: ToOpt = None,
    database: DatabaseOpt = None,
    mode: ModeOpt = "swap",
    jobs: JobsOpt = None,
    dry_run: DryRunOpt = False,
    yes: YesOpt = False,
    passkey: PasskeyOpt = False,
    no_safety_backup: NoSafetyBackupOpt = False,
    drop_previous: DropPreviousOpt = False,
    with_globals: WithGlobalsOpt = False,
    no_owner: NoOwnerOpt = False,
    leftovers: LeftoversOpt = False,
    drop_leftover: DropLeftoverOpt = None,
    with_files: WithFilesOpt = False,
    as_superuser: AsSuperuserOpt = False,
    repair: RepairOpt = False,
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
    """Restore a backup or a dump file into a database, safely. Swap mode never touches the
    live database until the restored copy is proven; with --target-time, --target-lsn,
    --target-name or --latest: point-in-time recovery, into a new cluster (--physical --into
    DIR) or of one database into --to URL."""
    from pgvault import restores
    from pgvault.cli import files as files_cli
    from pgvault.cli import wal
    from pgvault.cli.progress import BytesProgress
    from pgvault.restores import policy

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
    catalog = open_catalog(settings)  # repairs unfinished restores first
    if repair:
        _repair(settings, catalog)
        return
    if leftovers or drop_leftover:
        _leftovers(settings, catalog, to, database, drop_leftover)
        return
    record = catalog.find_backup(backup_id, database=database) if backup_id else None
    url, name = (to, None) if to else (None, database)
    target = restores.resolve_target(settings, record=record, url=url, database=name)
    request = restores.RestoreRequest(
        target=target,
        backup_id=record.id if record else None,
        file=file,
        mode=mode,  # type: ignore[arg-type]
        jobs=jobs,
        safety_backup=not no_safety_backup,
        drop_previous=drop_previous,
        with_globals=with_globals,
        no_owner=no_owner,
        decrypt=decryptor(settings, identity),
        created_by="cli",
        with_files=with_files,
        as_superuser=as_superuser,
    )
    if dry_run:
        _show_preview(restores.plan(settings, catalog, request).preview, as_json)
        if with_files and record is not None:
            files_cli.show_linked_plans(settings, catalog, record.id, request.decrypt, as_json)
        return
    plan = restores.plan(settings, catalog, request, preview=False)
    policy.check_environment(settings, target)  # before asking anyone to type anything
    answered = dataclasses.replace(
        request, confirm=_confirmation(target, yes), passkey=_passkey(target, passkey)
    )
    plan = dataclasses.replace(plan, request=answered)
    with BytesProgress(enabled=not as_json) as progress:
        result = restores.run(settings, catalog, plan, progress=progress.update)
    _show_result(result, as_json)


def _show_result(result: RestoreRecord, as_json: bool) -> None:
    if as_json:
        render.as_json(result)
        return
    for warning in result.warnings:
        render.info(f"warning: {warning}")
    kept = f"; previous database kept as {result.previous_database}" * bool(
        result.previous_database
    )
    render.info(
        f"restored {result.source} into {result.dbname} in {result.duration_seconds:.1f} s{kept}"
    )


def _confirmation(target: DatabaseTarget, yes: bool) -> str:
    """The database name the person typed (or, with --yes, the name itself)."""
    dbname = target.conn.dbname
    if yes:
        return dbname
    if not sys.stdin.isatty():
        raise ConfigError(f"no terminal to confirm on: pass --yes to restore into {dbname!r}")
    return str(typer.prompt(f"this replaces database {dbname!r}; type its name to go on"))


def _passkey(target: DatabaseTarget, ask: bool) -> str | None:
    """The restore passkey from the environment, or typed (hidden) when asked for or when
    the database has one and there is a terminal; the policy checks it."""
    given = os.environ.get(PASSKEY_ENV)
    if given:
        return given
    wanted = ask or target.settings.restore_passkey_hash is not None
    if wanted and sys.stdin.isatty():
        return str(typer.prompt("restore passkey", hide_input=True))
    if ask:
        raise ConfigError(f"no terminal to ask for the passkey on: set {PASSKEY_ENV}")
    return None


def _leftovers(
    settings: Settings, catalog: Catalog, to: str | None, database: str | None, drop: str | None
) -> None:
    from pgvault import databases, restores

    server_conn = databases.resolve(settings, to, database).conn
    if drop:
        restores.drop_leftover(catalog, server_conn, drop)
        render.info(f"dropped {drop}")
    for name in restores.leftovers(catalog, server_conn):
        render.out.print(name)


def _repair(settings: Settings, catalog: Catalog) -> None:
    """Repair once more (open_catalog did already) and say what is still open."""
    from pgvault import restores

    for done in restores.repair_unfinished(settings, catalog):
        render.info(f"restore {done.entry_id}: {done.outcome}")
    still = restores.unfinished(catalog)
    for entry in still:
        render.info(f"restore {entry.id} of {entry.dbname} is still unfinished (step {entry.step})")
    if not still:
        render.info("no unfinished restore")


def _show_preview(preview: restores.RestorePreview, as_json: bool) -> None:
    if as_json:
        render.as_json(preview)
        return
    layers = "+".join(preview.layers) or "none"
    render.info(
        f"would restore {preview.source} ({preview.kind}, layers: {layers}) into "
        f"{preview.target} in {preview.mode} mode with {preview.jobs} job(s); target exists: "
        f"{preview.target_exists}; safety backup: {preview.safety_backup}"
    )
    for guard in preview.guards:
        render.info(f"guard: {guard}")
    if preview.objects:
        render.table("objects in the archive", ("type", "count"), preview.objects.items())
    render.table(
        "rows per table",
        ("table", "at backup", "in target now"),
        ((t.table, t.recorded, t.current) for t in preview.tables),
    )


def register(app: typer.Typer) -> None:
    """Add ``restore`` to ``app``."""
    add_command(app, "restore", restore)
