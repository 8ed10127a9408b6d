"""Commands of unattended operation: ``prune``, ``schedules``, ``scheduler``, ``history``,
``health``. Registered on the main app by :func:`register`; each calls one domain function
and renders its answer (errors end in :func:`pgvault.cli.main.run` like every command's).
"""

from __future__ import annotations

import logging
from typing import Annotated

import typer

from pgvault.cli import render
from pgvault.cli.common import JsonOpt, open_catalog, settings_of
from pgvault.operations import monitoring, prune, scheduler, schedules


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
    show_kept: Annotated[bool, typer.Option("--show-kept", help="List kept backups too.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Apply retention: delete the backups no rule keeps (stored files, copies, then the
    catalog row is marked deleted). Prints each backup's fate and the rule behind it."""
    settings = settings_of(ctx)
    items = prune.apply(
        settings, open_catalog(settings), database=database, dry_run=dry_run, keep_last=keep_last
    )
    if as_json:
        render.as_json(items)
        return
    shown = [i for i in items if show_kept or not i.keep]
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
                "keep" if i.keep else (f"FAILED: {i.error}" if i.error else verb),
                "; ".join(i.reasons),
            )
            for i in shown
        ),
    )
    gone = [i for i in items if not i.keep]
    done = "would be deleted" if dry_run else "deleted"
    render.info(f"{len(gone)} backup(s) {done}, {len(items) - len(gone)} kept")
    if any(i.error for i in items):
        raise typer.Exit(5)


def schedules_(
    ctx: typer.Context,
    count: Annotated[int, typer.Option(min=1, help="Next run times shown per job.")] = 3,
    as_json: JsonOpt = False,
) -> None:
    """List the configured schedules and their next run times."""
    infos = schedules.next_runs(settings_of(ctx), count=count)
    if as_json:
        render.as_json(infos)
        return
    render.table(
        None,
        ("kind", "database", "name", "cron", "time zone", "enabled", "next runs (UTC)"),
        (
            (
                i.kind,
                i.database or "*",
                i.name,
                i.cron,
                i.timezone,
                "yes" if i.enabled else "no",
                ", ".join(render.when(t) for t in i.next_runs) or "-",
            )
            for i in infos
        ),
    )


def scheduler_(ctx: typer.Context) -> None:
    """Run the scheduled backups, restore drills, cleanup and freshness checks until
    SIGTERM (a running backup gets scheduler.shutdown_grace_seconds to finish)."""
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
    """Backups per day and database: completed, failed, interrupted, bytes."""
    rows = monitoring.history(open_catalog(settings_of(ctx)), days=days, database=database)
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
    """Per database ok/warning/critical (freshness, size, last run); exit 1 unless all ok."""
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
    app.command("prune")(prune_)
    app.command("schedules")(schedules_)
    app.command("scheduler")(scheduler_)
    app.command("history")(history_)
    app.command("health")(health_)
