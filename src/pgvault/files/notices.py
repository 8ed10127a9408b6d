"""Notifications about file sets (``files_*`` events), through :mod:`pgvault.notify`."""

from __future__ import annotations

from pgvault import notify
from pgvault.catalog.files import FileSnapshotRecord
from pgvault.config.operations import NotifyEvent
from pgvault.config.settings import Settings


def tell(
    settings: Settings,
    event: NotifyEvent,
    file_set: str,
    *,
    record: FileSnapshotRecord | None = None,
    error: str | None = None,
    detail: str | None = None,
) -> bool:
    """Send a file-set notification through the configured apprise URLs; never raises."""
    title = notify.TITLES[event].format(db=file_set)
    environment = (record.environment if record else None) or settings.environment
    lines = [f"event: {event.replace('_', ' ')}", f"file set: {file_set}"]
    if environment:
        lines.append(f"environment: {environment}")
    if record is not None:
        lines.append(f"snapshot: {record.id}")
        if record.backup_id:
            lines.append(f"database backup: {record.backup_id}")
        if record.objects is not None:
            lines.append(f"objects: {record.objects} ({record.copied_objects} copied)")
        if record.duration_seconds is not None:
            lines.append(f"duration: {record.duration_seconds:.1f} s")
    if error:
        lines.append(f"error: {error.strip().splitlines()[0][:500]}")
    if detail:
        lines.append(detail)
    text = "pgvault: " + title + (f" [{environment}]" if environment else "")
    return notify.send(settings, notify.Notice(event, None, text, "\n".join(lines)))
