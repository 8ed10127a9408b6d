"""Notifications through apprise (https://github.com/caronc/apprise): email (``mailto://``,
``mailtos://``), Slack, Discord, Telegram, Microsoft Teams, generic JSON webhooks, ...

Events (:data:`pgvault.config.operations.NotifyEvent`): ``backup_failed`` (on by default),
``backup_succeeded`` (opt-in), ``restore_started``, ``restore_finished``, ``restore_failed``,
``verify_failed``, ``freshness_lost``, ``retention_held`` (once per hold). A message carries
the database, its environment, the backup's size and duration, the error line and, when
``notifications.public_url`` is set, a link ``<public_url>/backups/<id>``.

:func:`compose` is pure; :func:`send` never raises: a notification that cannot be sent is
logged (without its URL, which may hold a password) and reported as False, so it can never
fail a backup or a restore.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from pgvault.catalog.records import BackupRecord, RestoreRecord
from pgvault.config.operations import NotifyEvent
from pgvault.config.settings import Settings

log = logging.getLogger(__name__)

TITLES: dict[NotifyEvent, str] = {
    "backup_failed": "backup of {db} failed",
    "backup_succeeded": "backup of {db} completed",
    "restore_started": "restore into {db} started",
    "restore_finished": "restore into {db} finished",
    "restore_failed": "restore into {db} failed",
    "verify_failed": "restore drill of {db} failed",
    "freshness_lost": "backups of {db} are not fresh",
    "retention_held": "retention of {db} is held: nothing is deleted",
    "files_snapshot_failed": "snapshot of file set {db} failed",
    "files_snapshot_succeeded": "snapshot of file set {db} completed",
    "files_restore_finished": "restore of file set {db} finished",
    "files_restore_failed": "restore of file set {db} failed",
    "wal_gap": "the WAL archive of {db} has a gap",
}


@dataclass(frozen=True)
class Notice:
    """One message: ``title`` (one line) and ``body`` (``key: value`` lines)."""

    event: NotifyEvent
    database: str | None
    title: str
    body: str


def _size(num: int | None) -> str:
    if num is None:
        return "-"
    value = float(num)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


def _first_line(text: str | None) -> str | None:
    if not text:
        return None
    return text.strip().splitlines()[0][:500] if text.strip() else None


def compose(
    settings: Settings,
    event: NotifyEvent,
    database: str | None,
    *,
    backup: BackupRecord | None = None,
    restore: RestoreRecord | None = None,
    error: str | None = None,
    detail: str | None = None,
) -> Notice:
    """Build the message for ``event`` (no I/O).

    Args:
        database: the config name of the database concerned.
        backup: the backup concerned (size, duration, id for the link).
        restore: the restore concerned (target, duration).
        error: the error text; only its first line is used.
        detail: one more line (e.g. why freshness was lost).
    """
    db_settings = settings.databases.get(database or "")
    environment = (
        (backup.environment if backup else None)
        or (db_settings.environment if db_settings else None)
        or settings.environment
    )
    name = database or "?"
    title = "pgvault: " + TITLES[event].format(db=name)
    if environment:
        title += f" [{environment}]"
    lines = [f"event: {event.replace('_', ' ')}", f"database: {name}"]
    if environment:
        lines.append(f"environment: {environment}")
    if backup is not None:
        lines.append(f"backup: {backup.id}")
        lines.append(f"size: {_size(backup.size_bytes)}")
        if backup.duration_seconds is not None:
            lines.append(f"duration: {backup.duration_seconds:.1f} s")
        lines.append(f"started: {backup.started_at:%Y-%m-%d %H:%M:%S}Z")
    if restore is not None:
        lines.append(f"restore: {restore.id} of {restore.source} into {restore.dbname}")
        if restore.duration_seconds is not None:
            lines.append(f"duration: {restore.duration_seconds:.1f} s")
    line = _first_line(error) or _first_line(backup.error if backup else None)
    if line and event not in ("backup_succeeded", "restore_started", "restore_finished"):
        lines.append(f"error: {line}")
    if detail:
        lines.append(detail)
    public = settings.notifications.public_url
    if public and backup is not None:
        lines.append(f"link: {public.rstrip('/')}/backups/{backup.id}")
    return Notice(event, database, title, "\n".join(lines))


def targets(settings: Settings, event: NotifyEvent, database: str | None) -> list[str]:
    """The apprise URLs ``event`` goes to for ``database``: the global URLs when the global
    event list has it, the database's own URLs when its list (default: the global) has it."""
    glob = settings.notifications
    urls = list(glob.urls) if event in glob.events else []
    db = settings.databases.get(database or "")
    if db is not None:
        events = db.notifications.events if db.notifications.events is not None else glob.events
        if event in events:
            urls += [u for u in db.notifications.urls if u not in urls]
    return urls


def send(settings: Settings, notice: Notice) -> bool:
    """Deliver ``notice`` to its targets; never raises.

    Returns:
        True when every target accepted it (or there is none), False otherwise (logged).
    """
    urls = targets(settings, notice.event, notice.database)
    if not urls:
        return True
    try:
        import apprise

        sender = apprise.Apprise()
        ok = True
        for index, url in enumerate(urls, 1):
            if not sender.add(url):
                log.warning("notification URL #%d is not a valid apprise URL: skipped", index)
                ok = False
        if len(sender) == 0:
            return False
        kind = (
            apprise.NotifyType.WARNING
            if notice.event.endswith("_held")
            else apprise.NotifyType.FAILURE
            if notice.event.endswith(("_failed", "_lost", "_gap"))
            else apprise.NotifyType.SUCCESS
            if notice.event.endswith(("_succeeded", "_finished"))
            else apprise.NotifyType.INFO
        )
        delivered = bool(
            sender.notify(
                body=notice.body,
                title=notice.title,
                notify_type=kind,
                body_format=apprise.NotifyFormat.TEXT,
            )
        )
    except Exception as exc:  # a notification must never fail the caller
        log.warning("notification %s for %s not sent: %s", notice.event, notice.database, exc)
        return False
    if not delivered:
        log.warning(
            "notification %s for %s was not delivered to every target (see apprise's log)",
            notice.event,
            notice.database,
        )
    return ok and delivered


def notify(
    settings: Settings,
    event: NotifyEvent,
    database: str | None,
    *,
    backup: BackupRecord | None = None,
    restore: RestoreRecord | None = None,
    error: str | None = None,
    detail: str | None = None,
) -> bool:
    """:func:`compose` then :func:`send`; never raises. Returns whether it was delivered."""
    try:
        notice = compose(
            settings, event, database, backup=backup, restore=restore, error=error, detail=detail
        )
    except Exception as exc:  # never fail the caller, even on a bad record
        log.warning("notification %s for %s not composed: %s", event, database, exc)
        return False
    return send(settings, notice)
