"""``pgvault wal ...`` (stream, push, fetch, status, mark, backups, window, prune) and the
physical sides of ``backup --physical`` and ``restore --target-*``, which
:mod:`pgvault.cli.app` hands over to :func:`backup_physical` and :func:`restore_to_point`.

Each command calls one function of :mod:`pgvault.physical`; errors end in
:func:`pgvault.cli.app.run` like every command's.
"""

from __future__ import annotations

import dataclasses
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Annotated, Any

import typer

from pgvault.cli import render
from pgvault.cli.common import IdentityOpt, JsonOpt, actor, decryptor, open_catalog, settings_of
from pgvault.errors import ConfigError, NotFound

if TYPE_CHECKING:
    pass

wal_app = typer.Typer(help="The WAL archive: streaming, pushing, fetching, restore points.")

DatabaseOpt = Annotated[str, typer.Option("--database", "-d", help="Name from the config.")]


def register(app: typer.Typer) -> None:
    """Add ``wal ...`` to the main command."""
    app.add_typer(
        wal_app,
        name="wal",
        no_args_is_help=True,
        short_help="The WAL archive, for point-in-time recovery",
    )


@wal_app.command("stream")
def stream(ctx: typer.Context, database: DatabaseOpt) -> None:
    """Stream the server's WAL (pg_receivewal on a replication slot) into the archive until
    SIGTERM or Ctrl-C; pg_receivewal is restarted with backoff if it dies."""
    from pgvault import databases
    from pgvault.physical import receiver

    settings = settings_of(ctx)
    target = databases.from_config(settings, database)
    cancel = threading.Event()

    def stop(_signum: int, _frame: FrameType | None) -> None:
        cancel.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    render.info(f"streaming the WAL of {database} (SIGTERM or Ctrl-C stops)")
    receiver.WalStream(settings, open_catalog(settings), target, cancel=cancel).run()
    render.info("stopped")


@wal_app.command("push")
def push(ctx: typer.Context, path: Path, database: DatabaseOpt) -> None:
    """Archive one WAL file (archive_command = 'pgvault wal push %p --database NAME')."""
    from pgvault import databases
    from pgvault.physical import walops

    settings = settings_of(ctx)
    target = databases.from_config(settings, database)
    record, stored = walops.push(settings, open_catalog(settings), target, path)
    render.info(f"{record.name} {'archived' if stored else 'was already archived'}")


@wal_app.command("fetch")
def fetch(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="WAL file name (%f).")],
    dest: Annotated[Path, typer.Argument(help="Where to write it (%p).")],
    database: DatabaseOpt,
    identity: IdentityOpt = None,
) -> None:
    """Write one archived WAL file (restore_command = 'pgvault wal fetch %f %p --database
    NAME'); exit 1 when it is not archived (the end of the archive)."""
    from pgvault.physical import walops

    settings = settings_of(ctx)
    try:
        walops.fetch(
            settings, open_catalog(settings), database, name, dest, decryptor(settings, identity)
        )
    except NotFound as exc:
        render.info(str(exc))
        raise typer.Exit(1) from exc


@wal_app.command("status")
def status_(ctx: typer.Context, database: DatabaseOpt, as_json: JsonOpt = False) -> None:
    """Streaming, last archived segment, lag and slot retention of one database's WAL."""
    from pgvault import databases
    from pgvault.physical import status

    settings = settings_of(ctx)
    target = databases.from_config(settings, database)
    found = status.wal_status(settings, open_catalog(settings), target)
    if as_json:
        render.as_json(found)
        return
    render.table(f"WAL archive of {database}", ("field", "value"), found.model_dump().items())


@wal_app.command("mark")
def mark(ctx: typer.Context, name: str, database: DatabaseOpt) -> None:
    """Create a named restore point (pg_create_restore_point) to recover to later with
    --target-name NAME."""
    from pgvault import databases
    from pgvault.physical import walnames, walops

    settings = settings_of(ctx)
    target = databases.from_config(settings, database)
    point = walops.mark(open_catalog(settings), target, name, created_by=actor())
    render.info(f"restore point {point.name!r} at {walnames.format_lsn(point.lsn)}")


@wal_app.command("backups")
def backups_(
    ctx: typer.Context,
    database: Annotated[str | None, typer.Option("--database", "-d")] = None,
    as_json: JsonOpt = False,
) -> None:
    """List physical base backups, newest first."""
    from pgvault.catalog import physical as rows

    found = rows.list_backups(open_catalog(settings_of(ctx)), database=database)
    if as_json:
        render.as_json(found)
        return
    render.table(
        None,
        ("id", "database", "kind", "status", "size", "started (UTC)", "ended (UTC)", "WAL"),
        (
            (
                b.id,
                b.database,
                b.kind if b.parent_id is None else f"{b.kind} of {b.parent_id}",
                b.status,
                render.size(b.size_bytes),
                render.when(b.started_at),
                render.when(b.finished_at),
                f"{b.start_wal or '-'}..{b.stop_wal or '-'}",
            )
            for b in found
        ),
    )


@wal_app.command("verify")
def verify_(
    ctx: typer.Context,
    backup_id: str,
    database: DatabaseOpt,
    full: Annotated[
        bool, typer.Option(help="Also recover it privately, start it and count rows.")
    ] = False,
    identity: IdentityOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Check a base backup: stored sha256, pg_verifybackup of every file; --full recovers it."""
    from pgvault import databases
    from pgvault.physical import verify as physical_verify

    settings = settings_of(ctx)
    target = databases.from_config(settings, database)
    result = physical_verify.verify(
        settings,
        open_catalog(settings),
        target,
        backup_id,
        full=full,
        decrypt=decryptor(settings, identity),
    )
    if as_json:
        render.as_json(result)
    else:
        render.info(f"base backup {backup_id}: ok ({result.detail})")


@wal_app.command("window")
def window(ctx: typer.Context, database: DatabaseOpt, as_json: JsonOpt = False) -> None:
    """The times a database can be recovered to (oldest base backup end .. archive end)."""
    from pgvault.physical import status

    found = status.recoverable_window(open_catalog(settings_of(ctx)), database)
    if as_json:
        render.as_json(found)
        return
    render.info(
        f"{database}: {render.when(found.start)} .. {render.when(found.end)} "
        f"({found.base_backups} base backups)"
    )
    for gap in found.gaps:
        render.info(f"gap: {gap}")


@wal_app.command("prune")
def prune(
    ctx: typer.Context,
    database: DatabaseOpt,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Delete nothing.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Apply the database's retention to its base backups, then delete the WAL older than
    the oldest kept one."""
    from pgvault.operations import physical_retention as retention

    settings = settings_of(ctx)
    report = retention.apply(settings, open_catalog(settings), database, dry_run=dry_run)
    if as_json:
        render.as_json(report)
    else:
        verb = "would delete" if dry_run else "deleted"
        for fate in report.backups:
            action = "keep" if fate.keep else verb
            render.info(f"{fate.backup_id}: {action} ({'; '.join(fate.reasons)})")
        render.info(f"{len(report.wal_deleted)} WAL segments {verb}")
    if report.errors:
        raise typer.Exit(5)


def backup_physical(
    ctx: typer.Context, database: str | None, incremental: bool, as_json: bool
) -> None:
    """``pgvault backup --physical [--incremental] --database NAME``."""
    from pgvault import databases
    from pgvault.cli.progress import BytesProgress
    from pgvault.physical import basebackup

    settings = settings_of(ctx)
    if database is None:
        raise ConfigError("--physical needs --database NAME (a database with pitr = true)")
    target = databases.from_config(settings, database)
    request = basebackup.PhysicalBackupRequest(
        target=target, incremental=incremental, created_by=actor()
    )
    with BytesProgress(enabled=not as_json) as progress:
        record = basebackup.create(
            settings, open_catalog(settings), request, progress=progress.update
        )
    if as_json:
        render.as_json(record)
        return
    render.info(
        f"base backup {record.id} ({record.kind}) of {database} completed: "
        f"{render.size(record.size_bytes)} in {record.duration_seconds:.1f} s, "
        f"WAL {record.start_wal}..{record.stop_wal} -> {record.storage_key}"
    )


@dataclasses.dataclass(frozen=True)
class PointInTime:
    """The options of ``restore`` that ask for a point in time."""

    target_time: str | None = None
    target_lsn: str | None = None
    target_name: str | None = None
    latest: bool = False
    into: Path | None = None
    port: int | None = None

    def wanted(self) -> bool:
        """Whether any of them was given."""
        given = (self.target_time, self.target_lsn, self.target_name, self.into)
        return self.latest or any(v is not None for v in given)


def restore_to_point(
    ctx: typer.Context,
    when: PointInTime,
    *,
    database: str | None,
    to: str | None,
    yes: bool,
    identity: Path | None,
    as_json: bool,
    swap_options: dict[str, Any] | None = None,
) -> None:
    """``restore --physical --database NAME --target-... --into DIR [--port N]`` (a new
    cluster) or ``restore --database NAME --target-... --to URL`` (one database);
    ``swap_options`` are the swap restore's (``jobs``, ``no_owner``, ``safety_backup``,
    ``drop_previous``)."""
    from pgvault import databases, restores
    from pgvault.physical import intodb, recovery

    settings = settings_of(ctx)
    if database is None:
        raise ConfigError("a point-in-time restore needs --database NAME (its WAL archive)")
    if (when.into is None) == (to is None):
        raise ConfigError("give --into DIR (a new cluster) or --to URL (one database)")
    source = databases.from_config(settings, database)
    target = recovery.parse_target(when.target_time, when.target_lsn, when.target_name, when.latest)
    decrypt = decryptor(settings, identity)
    catalog = open_catalog(settings)
    if when.into is not None:
        request = recovery.RecoveryRequest(
            target=source, recovery_target=target, into=when.into, port=when.port, decrypt=decrypt
        )
        plan = recovery.plan(settings, catalog, request)
        render.info(f"recovering base backup {plan.chain[-1].id} to {target.describe()}")
        result = recovery.run(settings, catalog, plan, request)
        shown = {
            "reached_time": result.reached_time,
            "reached_lsn": result.reached_lsn,
            "data_directory": result.data_directory,
            "port": result.port,
        }
        if as_json:
            render.as_json(shown)
        else:
            render.info(
                f"recovered to {render.when(result.reached_time)} (LSN {result.reached_lsn}); "
                f"server running on port {result.port} with data in {result.data_directory}"
            )
        return
    destination = databases.from_url(settings, to or "")
    dbname = destination.conn.dbname
    if not yes:
        if not sys.stdin.isatty():
            raise ConfigError(f"no terminal to confirm on: pass --yes to restore into {dbname!r}")
        typed = typer.prompt(f"this replaces database {dbname!r}; type its name to go on")
        if typed != dbname:
            raise ConfigError("the name typed does not match; nothing was restored")
    swap = restores.RestoreRequest(target=destination, confirm=dbname, **(swap_options or {}))
    done = intodb.run(
        settings, catalog, source, target, swap, decrypt=decrypt, progress=render.info
    )
    if as_json:
        render.as_json(
            {
                "reached_time": done.recovered.reached_time,
                "reached_lsn": done.recovered.reached_lsn,
                "restore": done.restore,
            }
        )
        return
    kept = done.restore.previous_database
    render.info(
        f"restored {source.conn.dbname} as of {render.when(done.recovered.reached_time)} into "
        f"{dbname}" + (f"; previous database kept as {kept}" if kept else "")
    )
