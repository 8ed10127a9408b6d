"""Commands of unattended operation: ``prune``, ``schedules``, ``scheduler``, ``history``,
``health``. Registered on the main app by :func:`register`; each calls one domain function
and renders its answer (errors end in :func:`pgvault.cli.app.run` like every command's).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Annotated

import typer

from pgvault.cli import render
from pgvault.cli.common import JsonOpt, actor, add_command, open_catalog, settings_of
from pgvault.errors import ConfigError

if TYPE_CHECKING:
    from pgvault.operations import prune


def prune_(
    ctx: typer.Context,
    database: Annotated[
        str | None, typer.Option("--database", "-d", help="Only this database.")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show what would go and why; delete nothing.")
    ] = False,
    keep_last: Annotated[
        int | None,
        typer.Option(min=1, help="Ad hoc: keep the last N instead of the configured policy."),
    ] = None,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Delete even while retention is held (newest backup failed, or none recent); "
            "minimum_redundancy and Object Lock still apply. Written to the audit log.",
        ),
    ] = False,
    reason: Annotated[
        str | None, typer.Option("--reason", help="Why --force is used (for the audit log).")
    ] = None,
    show_kept: Annotated[bool, typer.Option("--show-kept", help="List kept backups too.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Apply retention: delete the backups no rule keeps. Their stored files and copies go,
    then the catalog row is marked deleted; prints each backup's fate and the rule behind
    it. The minimum_redundancy newest completed backups are never deleted."""
    if reason is not None and not force:
        raise ConfigError("--reason goes with --force: add --force or drop --reason")
    settings = settings_of(ctx)
    from pgvault.operations import prune

    report = prune.apply(
        settings,
        open_catalog(settings),
        database=database,
        dry_run=dry_run,
        keep_last=keep_last,
        force=force,
        reason=reason,
        actor=actor(),
        every_row=show_kept or as_json,
    )
    if as_json:
        render.as_json(report.items)
        return
    _render_prune(report, show_kept, dry_run)
    if any(i.error for i in report.items):
        raise typer.Exit(5)


def _render_prune(report: prune.PruneReport, show_kept: bool, dry_run: bool) -> None:
    items = report.items
    shown = [i for i in items if show_kept or _floor_keeps(i) or not _all_kept(i)]
    verb = "would delete" if dry_run else "delete"
    render.table(
        None,
        ("id", "database", "status", "trigger", "started (UTC)", "size", "action", "why"),
        (
            (
                i.backup_id,
                i.database,
                i.status,
                i.trigger,
                render.when(i.started_at),
                render.size(i.size_bytes),
                _action(i, verb),
                "; ".join(i.reasons),
            )
            for i in shown
        ),
    )
    for name, hold in sorted({(i.database, i.held) for i in items if i.held}):
        render.info(f"retention of {name} is held: {hold} (nothing deleted; --force overrides)")
    gone = [i for i in items if not i.keep]
    done = "would be deleted" if dry_run else "deleted"
    unlisted = sum(report.unlisted.values())
    note = f" ({unlisted} younger than max_age not listed: --show-kept)" if unlisted else ""
    render.info(f"{len(gone)} backup(s) {done}, {report.kept} kept{note}")


def _floor_keeps(item: prune.PruneItem) -> bool:
    """Whether ``minimum_redundancy`` alone keeps the backup (no other rule would)."""
    from pgvault.operations import retention

    return item.protected and all(r.startswith(retention.FLOOR) for r in item.reasons)


def _all_kept(item: prune.PruneItem) -> bool:
    return item.keep and all(c.keep for c in item.copies)


def _action(item: prune.PruneItem, verb: str) -> str:
    if item.error:
        return f"FAILED: {item.error}"
    if not item.keep:
        return verb
    dropped = [c.target for c in item.copies if not c.keep]
    if dropped:
        return f"{verb} on {', '.join(dropped)}"
    return "keep (minimum_redundancy)" if item.protected else "keep"


def schedules_(
    ctx: typer.Context,
    count: Annotated[int, typer.Option(min=1, help="Next run times shown per job.")] = 3,
    as_json: JsonOpt = False,
) -> None:
    """List the schedules and their next runs. Times are in each schedule's own time zone,
    with UTC beside them."""
    from pgvault.operations import schedules

    infos = schedules.next_runs(settings_of(ctx), count=count)
    if as_json:
        render.as_json(infos)
        return
    render.table(
        None,
        ("kind", "database", "name", "cron", "time zone", "enabled", "next runs (local, UTC)"),
        (
            (
                i.kind,
                i.database or "*",
                i.name,
                i.cron,
                i.timezone,
                "yes" if i.enabled else "no",
                ", ".join(render.local_and_utc(t, i.timezone) for t in i.next_runs) or "-",
            )
            for i in infos
        ),
    )


def scheduler_(ctx: typer.Context) -> None:
    """Run the schedules alone, without the API. Scheduled backups, restore drills, cleanup
    and freshness checks run until SIGTERM; a running backup gets
    scheduler.shutdown_grace_seconds to finish."""
    from pgvault.cli.collector import serving
    from pgvault.operations import scheduler

    serving()  # runs for days: the collector's own thresholds
    settings = settings_of(ctx)
    ours = logging.getLogger("pgvault")
    if ours.getEffectiveLevel() > logging.INFO:
        ours.setLevel(logging.INFO)
    catalog = open_catalog(settings)
    render.info(f"scheduler running on catalog {catalog.describe()} (SIGTERM stops it)")

    scheduler.run_forever(settings, catalog)


def history_(
    ctx: typer.Context,
    days: Annotated[int, typer.Option(min=1, help="Days back from today.")] = 30,
    database: Annotated[str | None, typer.Option("--database", "-d")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Backups per day and database. Completed, failed, interrupted, bytes."""
    rows = open_catalog(settings_of(ctx)).history(days=days, database=database)
    if as_json:
        render.as_json(rows)
        return
    render.table(
        None,
        ("day (UTC)", "database", "completed", "failed", "interrupted", "deleted", "bytes"),
        (
            (
                r.day.isoformat(),
                r.database,
                r.completed,
                r.failed,
                r.interrupted,
                r.deleted,
                render.size(r.total_bytes),
            )
            for r in rows
        ),
    )


def health_(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Each database's backup health: ok, warning or critical. Judged by freshness, size and
    the last run; exits 1 unless all are ok."""
    from pgvault.operations import monitoring

    settings = settings_of(ctx)

    report = monitoring.health(settings, open_catalog(settings))
    if as_json:
        render.as_json(report)
    else:
        render.table(
            None,
            ("database", "status", "newest completed (UTC)", "size", "why"),
            (
                (
                    d.database,
                    d.status,
                    render.when(d.last_success_at),
                    render.size(d.last_size_bytes),
                    "; ".join(d.reasons),
                )
                for d in report.databases
            ),
        )
        if report.file_sets:
            render.table(
                None,
                ("file set", "status", "newest completed (UTC)", "objects", "why"),
                (
                    (
                        f.file_set,
                        f.status,
                        render.when(f.last_success_at),
                        f.last_objects,
                        "; ".join(f.reasons),
                    )
                    for f in report.file_sets
                ),
            )
    if report.status != "ok":
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""
    add_command(app, "prune", prune_)
    add_command(app, "schedules", schedules_)
    add_command(app, "scheduler", scheduler_)
    add_command(app, "history", history_)
    add_command(app, "health", health_)
