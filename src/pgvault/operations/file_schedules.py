"""Scheduled file snapshots, run by :mod:`pgvault.operations.scheduler` exactly once per
slot (the scheduler holds the slot's lock; the slot is found again by its labels)."""

from __future__ import annotations

import logging
import threading

from pgvault.catalog import Catalog
from pgvault.catalog import files as rows
from pgvault.catalog.files import FileSnapshotRecord
from pgvault.config.settings import Settings
from pgvault.errors import Busy, PgvaultError
from pgvault.files import notices, sets
from pgvault.files.snapshot import SnapshotRequest, snapshot
from pgvault.files.transfer import Cancelled

log = logging.getLogger(__name__)

SLOT_LOOKBACK_ROWS = 500


def slot_snapshot(
    catalog: Catalog, file_set: str, labels: dict[str, str]
) -> FileSnapshotRecord | None:
    """A snapshot of ``file_set`` carrying all of ``labels`` (a slot already run), if any."""
    for record in rows.list_snapshots(
        catalog, file_set=file_set, include_deleted=True, limit=SLOT_LOOKBACK_ROWS
    ):
        if all(record.labels.get(k) == v for k, v in labels.items()):
            return record
    return None


def run(
    settings: Settings,
    catalog: Catalog,
    file_set: str,
    labels: dict[str, str],
    cancel: threading.Event | None,
) -> FileSnapshotRecord | None:
    """Take one scheduled snapshot labelled ``labels``; never raises. A failure is
    recorded (a ``failed`` row even when it failed before starting), logged and notified.

    Returns:
        The completed row, else None.
    """
    request = SnapshotRequest(
        file_set=file_set, trigger="scheduled", labels=labels, created_by="scheduler"
    )
    try:
        record = snapshot(settings, catalog, request, cancel=cancel)
    except Busy as exc:
        log.warning("scheduled snapshot of %s skipped (overlap): %s", file_set, exc)
        return None
    except Cancelled:
        log.warning("scheduled snapshot of %s interrupted by the shutdown", file_set)
        return None
    except PgvaultError as exc:
        failed = slot_snapshot(catalog, file_set, labels) or sets.record_failure(
            settings, catalog, file_set, str(exc), trigger="scheduled", labels=labels
        )
        log.error("scheduled snapshot of %s failed: %s", file_set, exc)
        notices.tell(settings, "files_snapshot_failed", file_set, record=failed, error=str(exc))
        return None
    notices.tell(settings, "files_snapshot_succeeded", file_set, record=record)
    return record
