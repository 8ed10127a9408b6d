"""One recovery point: a database backup and the snapshots of its file sets, linked.

:func:`snapshot_for_backup` is called by ``backups.create`` once a backup of a database with
``files = [...]`` is completed; :func:`restore_for_backup` by ``restores.run`` with
``--with-files``, before the database swap (files first, the swap last), and its result's
:meth:`LinkedRestore.undo` if the database part then fails.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime

from pgvault.catalog import Catalog
from pgvault.catalog import files as rows
from pgvault.catalog.files import FileSnapshotRecord
from pgvault.catalog.records import BackupRecord
from pgvault.config.settings import Settings
from pgvault.dumps.layers import DecryptHook
from pgvault.errors import Busy, PgvaultError, RestoreError
from pgvault.files import notices, restore, sets
from pgvault.files.snapshot import SnapshotRequest, snapshot

log = logging.getLogger(__name__)

BUSY_WAIT_SECONDS = 600.0
"""How long a linked snapshot waits for a running snapshot of the same set to end."""
BUSY_POLL_SECONDS = 2.0


def linked_sets(settings: Settings, backup: BackupRecord) -> list[str]:
    """The file sets ``backup``'s database links (``databases.NAME.files``)."""
    db = settings.databases.get(backup.database)
    return list(db.files) if db is not None else []


def snapshot_for_backup(
    settings: Settings,
    catalog: Catalog,
    backup: BackupRecord,
    *,
    as_of: datetime | None = None,
    cancel: threading.Event | None = None,
) -> list[FileSnapshotRecord]:
    """Take the snapshots of the file sets linked to ``backup``'s database, each linked
    to it (``backup_id``) and as of ``as_of`` (default: the backup's start), the moment of
    the dump's snapshot. Pre-restore safety backups take none (the restore handles files).

    Never raises for a snapshot's failure: the database backup stays completed; the
    failure is recorded as a ``failed`` row, logged and notified (``files_snapshot_failed``).

    Returns:
        One row per linked set (``completed`` or ``failed``).
    """
    if backup.status != "completed" or backup.trigger == "pre-restore":
        return []
    done = []
    for name in linked_sets(settings, backup):
        request = SnapshotRequest(
            file_set=name,
            trigger="linked",
            backup_id=backup.id,
            as_of=as_of or backup.started_at,
            labels={"database": backup.database},
            created_by=backup.created_by,
        )
        deadline = time.monotonic() + BUSY_WAIT_SECONDS
        while True:
            try:
                record = snapshot(settings, catalog, request, cancel=cancel)
                notices.tell(settings, "files_snapshot_succeeded", name, record=record)
                break
            except Busy as exc:
                if time.monotonic() < deadline and not (cancel and cancel.is_set()):
                    time.sleep(BUSY_POLL_SECONDS)
                    continue
                record = sets.record_failure(settings, catalog, name, str(exc), backup_id=backup.id)
            except PgvaultError as exc:
                found = rows.list_snapshots(catalog, backup_id=backup.id, file_set=name, limit=1)
                record = (
                    found[0]
                    if found
                    else sets.record_failure(settings, catalog, name, str(exc), backup_id=backup.id)
                )
            log.error("file snapshot of %s for backup %s failed: %s", name, backup.id, record.error)
            notices.tell(settings, "files_snapshot_failed", name, record=record, error=record.error)
            break
        done.append(record)
    return done


@dataclass
class LinkedRestore:
    """The file restores done for a database restore, and how to take them back."""

    settings: Settings
    catalog: Catalog
    results: list[restore.FileRestoreResult] = field(default_factory=list)
    decrypt: DecryptHook | None = None

    def undo(self) -> list[str]:
        """Restore each destination from its safety snapshot (objects the restore added
        are deleted again); never raises. Returns one line per problem."""
        problems = []
        for result in self.results:
            if result.safety_snapshot_id is None:
                continue
            request = restore.FileRestoreRequest(
                snapshot_id=result.safety_snapshot_id,
                to=result.destination,
                delete_extra=True,
                safety="never",
                decrypt=self.decrypt,
            )
            try:
                restore.run(self.settings, self.catalog, request)
            except PgvaultError as exc:
                problems.append(
                    f"files of {result.destination} not put back ({exc}): restore file "
                    f"snapshot {result.safety_snapshot_id}"
                )
        return problems


def restore_for_backup(
    settings: Settings,
    catalog: Catalog,
    backup: BackupRecord | None,
    *,
    decrypt: DecryptHook | None = None,
    created_by: str | None = None,
) -> LinkedRestore:
    """Restore, into each set's own source, the newest completed snapshot linked to
    ``backup`` per file set, each after a safety snapshot of what is there now.

    Raises:
        RestoreError: the backup has no completed linked snapshot, or a file restore failed
            (the ones already done are undone first).
    """
    if backup is None:
        raise RestoreError("--with-files needs a backup id (a --file dump has no linked files)")
    newest: dict[str, FileSnapshotRecord] = {}
    for record in rows.linked_snapshots(catalog, [backup.id]).get(backup.id, []):
        if record.status == "completed" and record.file_set not in newest:
            newest[record.file_set] = record
    if not newest:
        raise RestoreError(
            f"backup {backup.id} has no completed file snapshot linked to it: restore without "
            "--with-files, or choose a backup whose 'pgvault show' lists one"
        )
    linked = LinkedRestore(settings, catalog, decrypt=decrypt)
    for record in newest.values():
        request = restore.FileRestoreRequest(
            snapshot_id=record.id, safety="always", decrypt=decrypt, created_by=created_by
        )
        try:
            linked.results.append(restore.run(settings, catalog, request))
        except PgvaultError as exc:
            problems = linked.undo()
            notices.tell(
                settings, "files_restore_failed", record.file_set, record=record, error=str(exc)
            )
            extra = f" ({'; '.join(problems)})" if problems else ""
            raise RestoreError(f"files of backup {backup.id} not restored: {exc}{extra}") from exc
        notices.tell(settings, "files_restore_finished", record.file_set, record=record)
    return linked
