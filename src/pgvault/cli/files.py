"""``pgvault files ...``: snapshots of file sets (an app's uploaded files), their restores,
verification and retention. Each command calls one domain function of
:mod:`pgvault.files` and renders its answer; errors end in :func:`pgvault.cli.app.run`.

Also the few lines ``list``/``show``/``backup``/``restore`` print about linked snapshots.
"""

from __future__ import annotations

import sys
from types import TracebackType
from typing import TYPE_CHECKING, Annotated, Any

import typer

from pgvault.cli import render
from pgvault.cli.common import IdentityOpt, JsonOpt, decryptor, open_catalog, settings_of
from pgvault.errors import ConfigError

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

    from pgvault.catalog import Catalog
    from pgvault.catalog.files import FileSnapshotRecord
    from pgvault.catalog.records import BackupRecord
    from pgvault.config.settings import Settings
    from pgvault.dumps.layers import DecryptHook
    from pgvault.files.plan import RestoreCounts
    from pgvault.files.transfer import TransferProgress

app = typer.Typer(
    help="File snapshots: an app's uploaded files (S3 prefix or directory).",
    no_args_is_help=True,
)

SNAPSHOT_FIELDS = (
    "id",
    "file_set",
    "objects",
    "bytes",
    "copied_objects",
    "copied_bytes",
    "duration_seconds",
)
RESTORE_FIELDS = (
    "restored_objects",
    "restored_bytes",
    "skipped_unchanged",
    "deleted_extra",
    "safety_snapshot_id",
)


class FilesProgress:
    """Objects, bytes, rate and ETA of a transfer, on stderr (a terminal only)."""

    def __init__(self, enabled: bool = True) -> None:
        self._task: TaskID | None = None
        self._progress: Progress | None = None  # None: nothing is drawn
        if not (enabled and sys.stderr.isatty()):  # off a terminal rich is not even imported
            return
        from rich.progress import (
            DownloadColumn,
            Progress,
            SpinnerColumn,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        self._progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=render.err,
            transient=True,
        )

    def update(self, state: TransferProgress) -> None:
        """Show ``state``."""
        if self._progress is None:
            return
        total = f"{state.objects_total}" + ("" if state.listing_done else "+")
        text = f"{state.phase} {state.objects_done}/{total} objects"
        if self._task is None:
            self._task = self._progress.add_task(text, total=None)
        self._progress.update(
            self._task,
            description=text,
            completed=state.bytes_done,
            total=state.bytes_total if state.listing_done else None,
        )

    def __enter__(self) -> FilesProgress:
        if self._progress is not None:
            self._progress.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._progress is not None:
            self._progress.stop()


def _pick(record: Any, names: tuple[str, ...]) -> dict[str, Any]:
    return {name: getattr(record, name) for name in names}


@app.command("snapshot")
def snapshot_(ctx: typer.Context, name: str, as_json: JsonOpt = False) -> None:
    """Take a snapshot of the file set NAME (its files.NAME section in the config)."""
    from pgvault.files.snapshot import SnapshotRequest, snapshot

    settings = settings_of(ctx)
    catalog = open_catalog(settings)
    with FilesProgress(enabled=not as_json) as progress:
        record = snapshot(
            settings, catalog, SnapshotRequest(file_set=name), progress=progress.update
        )
    if as_json:
        render.as_json(_pick(record, SNAPSHOT_FIELDS))
        return
    render.info(
        f"file snapshot {record.id} of {name} completed: {record.objects} objects "
        f"({render.size(record.bytes)}), {record.copied_objects} read "
        f"({render.size(record.copied_bytes)}), {record.stored_blobs} new blobs "
        f"({render.size(record.stored_bytes)}) in {record.duration_seconds or 0:.1f} s"
    )


@app.command("list")
def list_(
    ctx: typer.Context,
    file_set: Annotated[str | None, typer.Option("--file-set", help="Only this set.")] = None,
    status: Annotated[
        str | None,
        typer.Option(help="completed (default), running, failed, interrupted, deleted, all"),
    ] = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many rows.")] = 50,
    as_json: JsonOpt = False,
) -> None:
    """List file snapshots, newest first (completed ones unless --status says otherwise)."""
    from pgvault.catalog import files as rows

    allowed = ("completed", "running", "failed", "interrupted", "deleted", "all")
    if status is not None and status not in allowed:
        raise ConfigError(f"--status {status!r} is not one of {', '.join(allowed)}")
    chosen = () if status == "all" else (status or "completed",)
    found = rows.list_snapshots(
        open_catalog(settings_of(ctx)), file_set=file_set, statuses=chosen, limit=limit
    )
    if as_json:
        render.as_json(found)
        return
    render.table(
        None,
        ("id", "file set", "status", "trigger", "backup", "objects", "size", "started (UTC)"),
        (
            (
                r.id,
                r.file_set,
                r.status,
                r.trigger,
                r.backup_id,
                r.objects,
                render.size(r.bytes),
                render.when(r.started_at),
            )
            for r in found
        ),
    )


@app.command("show")
def show(ctx: typer.Context, snapshot_id: str, as_json: JsonOpt = False) -> None:
    """Everything the catalog knows about one file snapshot."""
    from pgvault.catalog import files as rows

    catalog = open_catalog(settings_of(ctx))
    record = rows.get_snapshot(catalog, snapshot_id)
    copies = rows.copies_of(catalog, record.id)
    if as_json:
        render.as_json({**record.model_dump(mode="json"), "copies": copies})
        return
    render.table(f"file snapshot {record.id}", ("field", "value"), record.model_dump().items())
    if copies:
        render.table(
            "copies",
            ("storage", "status", "blobs", "bytes", "error"),
            ((c.storage, c.status, c.copied_blobs, c.copied_bytes, c.error) for c in copies),
        )


@app.command("verify")
def verify_(
    ctx: typer.Context,
    snapshot_id: str,
    full: Annotated[bool, typer.Option(help="Read and re-hash every blob.")] = False,
    identity: IdentityOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Check that every blob exists with its size (--full: re-hash them all)."""
    from pgvault.files import verify

    settings = settings_of(ctx)
    result = verify.verify(
        settings,
        open_catalog(settings),
        snapshot_id,
        full=full,
        decrypt=decryptor(settings, identity),
    )
    if as_json:
        render.as_json(result)
    else:
        render.info(f"file snapshot {snapshot_id}: ok ({result.detail})")


@app.command("delete")
def delete(
    ctx: typer.Context,
    snapshot_id: str,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask.")] = False,
) -> None:
    """Delete a file snapshot (its blobs go at the next prune if nothing else uses them)."""
    from pgvault.catalog import files as rows
    from pgvault.operations import file_retention as retention

    settings = settings_of(ctx)
    catalog = open_catalog(settings)
    record = rows.get_snapshot(catalog, snapshot_id)
    if not yes:
        typer.confirm(f"delete file snapshot {record.id} of {record.file_set}?", abort=True)
    retention.delete_snapshot(settings, catalog, record)
    render.info(f"file snapshot {record.id} deleted")


def show_plan(plan: RestoreCounts, as_json: bool) -> None:
    """Render a restore plan (``--dry-run``)."""
    if as_json:
        render.as_json(plan)
        return
    render.info(
        f"would restore file snapshot {plan.snapshot_id} into {plan.destination}: "
        f"{plan.to_add} to add ({render.size(plan.add_bytes)}), {plan.to_change} to change "
        f"({render.size(plan.change_bytes)}), {plan.unchanged} unchanged, "
        f"{plan.to_delete} to delete, {plan.extra_kept} extra kept; "
        f"safety snapshot first: {'yes' if plan.safety_snapshot else 'no'}"
    )
    for label, keys in (
        ("add", plan.first_add),
        ("change", plan.first_change),
        ("delete", plan.first_delete),
    ):
        for key in keys:
            render.out.print(f"{label}  {key}", markup=False, highlight=False)


@app.command("restore")
def restore_(
    ctx: typer.Context,
    snapshot_id: str,
    to: Annotated[
        str | None,
        typer.Option("--to", help="s3://bucket/prefix or a directory (default: the set's source)."),
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show counts and keys only.")] = False,
    delete_extra: Annotated[
        bool,
        typer.Option(
            "--delete-extra", help="Delete what the snapshot lacks (safety snapshot first)."
        ),
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask.")] = False,
    identity: IdentityOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Restore a file snapshot; nothing is deleted without --delete-extra, and anything
    overwritten or deleted is kept in a safety snapshot first."""
    from pgvault.catalog import files as rows
    from pgvault.files import restore

    settings = settings_of(ctx)
    catalog = open_catalog(settings)
    request = restore.FileRestoreRequest(
        snapshot_id=snapshot_id,
        to=to,
        delete_extra=delete_extra,
        decrypt=decryptor(settings, identity),
    )
    if dry_run:
        show_plan(restore.plan(settings, catalog, request), as_json)
        return
    if not yes:
        if not sys.stdin.isatty():
            raise ConfigError("no terminal to confirm on: pass --yes to restore the files")
        record = rows.get_snapshot(catalog, snapshot_id)
        where = to or record.source
        typer.confirm(f"restore file snapshot {record.id} into {where}?", abort=True)
    with FilesProgress(enabled=not as_json) as progress:
        result = restore.run(settings, catalog, request, progress=progress.update)
    if as_json:
        render.as_json(_pick(result, RESTORE_FIELDS))
        return
    safety = f"; safety snapshot {result.safety_snapshot_id}" if result.safety_snapshot_id else ""
    render.info(
        f"restored {result.restored_objects} objects ({render.size(result.restored_bytes)}) "
        f"into {result.destination}; {result.skipped_unchanged} unchanged, "
        f"{result.deleted_extra} deleted, {result.kept_extra} extra kept{safety}"
    )


@app.command("prune")
def prune_(
    ctx: typer.Context,
    file_set: Annotated[str | None, typer.Option("--file-set", help="Only this set.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Decide and show only.")] = False,
    keep_last: Annotated[int | None, typer.Option(min=1, help="Ad hoc: keep the last N.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Apply retention to file snapshots, then sweep the blobs nothing kept references."""
    from pgvault.operations import file_retention as retention

    settings = settings_of(ctx)
    report = retention.apply(
        settings, open_catalog(settings), file_set=file_set, dry_run=dry_run, keep_last=keep_last
    )
    if as_json:
        render.as_json(report)
        return
    verb = "would delete" if dry_run else "delete"
    render.table(
        None,
        ("id", "file set", "status", "trigger", "started (UTC)", "action", "why"),
        (
            (
                i.snapshot_id,
                i.file_set,
                i.status,
                i.trigger,
                render.when(i.started_at),
                "keep" if i.keep else (f"FAILED: {i.error}" if i.error else verb),
                "; ".join(i.reasons),
            )
            for i in report.items
        ),
    )
    for s in report.sweeps:
        what = s.skipped or (
            f"{s.deleted_blobs} blobs ({render.size(s.deleted_bytes)}) and {s.deleted_other} "
            f"other objects deleted, {s.referenced} referenced"
        )
        render.info(f"sweep of {s.file_set} on {s.storage}: {what}")
    if any(i.error for i in report.items):
        raise typer.Exit(5)


# --- what the database commands say about linked snapshots ------------------------------


def linked_summary(catalog: Catalog, backup_ids: list[str]) -> dict[str, str]:
    """Per backup id: ``"images:completed, docs:failed"`` for ``pgvault list``."""
    from pgvault.catalog import files as rows

    found = rows.linked_snapshots(catalog, backup_ids)
    return {
        backup_id: ", ".join(f"{r.file_set}:{r.status}" for r in records)
        for backup_id, records in found.items()
    }


def show_linked(catalog: Catalog, backup_id: str) -> list[FileSnapshotRecord]:
    """Print the snapshots linked to a backup (``pgvault show``); returns them."""
    from pgvault.catalog import files as rows

    found = rows.linked_snapshots(catalog, [backup_id]).get(backup_id, [])
    if found:
        render.table(
            "linked file snapshots",
            ("id", "file set", "status", "objects", "size", "consistency"),
            (
                (r.id, r.file_set, r.status, r.objects, render.size(r.bytes), r.consistency)
                for r in found
            ),
        )
    return found


def report_linked(catalog: Catalog, backups_done: list[BackupRecord], as_json: bool) -> bool:
    """After ``pgvault backup``: one line per linked snapshot; True if one failed."""
    from pgvault.catalog import files as rows

    failed = False
    found = rows.linked_snapshots(catalog, [b.id for b in backups_done])
    for backup in backups_done:
        for record in found.get(backup.id, []):
            failed = failed or record.status != "completed"
            if as_json:
                continue
            if record.status == "completed":
                render.info(
                    f"file snapshot {record.id} of {record.file_set} completed: "
                    f"{record.objects} objects, {record.copied_objects} read"
                )
            else:
                render.error(f"file snapshot of {record.file_set} failed: {record.error}")
    return failed


def show_linked_plans(
    settings: Settings,
    catalog: Catalog,
    backup_id: str,
    decrypt: DecryptHook | None,
    as_json: bool,
) -> None:
    """``pgvault restore ID --with-files --dry-run``: the plan of each linked restore."""
    from pgvault.catalog import files as rows
    from pgvault.files import restore

    newest: dict[str, FileSnapshotRecord] = {}
    for record in rows.linked_snapshots(catalog, [backup_id]).get(backup_id, []):
        if record.status == "completed":
            newest.setdefault(record.file_set, record)
    for record in newest.values():
        request = restore.FileRestoreRequest(record.id, safety="always", decrypt=decrypt)
        show_plan(restore.plan(settings, catalog, request), as_json)
