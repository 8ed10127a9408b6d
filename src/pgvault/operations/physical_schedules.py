"""What the scheduler runs for ``pitr = true`` databases: scheduled base backups, WAL
streams, and retention of base backups and WAL. Called by
:mod:`pgvault.operations.scheduler`, which holds the schedule's lock; nothing here raises.

A schedule with ``physical = true`` takes a base backup (``incremental = true``: against
the previous one, PostgreSQL 17+) labelled ``schedule=<name>, scheduled_for=<slot>``; a
slot that already has such a row (another instance ran it) is not run again.
"""

from __future__ import annotations

import logging
import threading

from pgvault import databases
from pgvault.catalog import Catalog
from pgvault.catalog import physical as rows
from pgvault.catalog.physical import PhysicalBackupRecord
from pgvault.config.settings import Settings
from pgvault.errors import Busy, PgvaultError
from pgvault.operations import physical_retention as retention
from pgvault.physical import basebackup, receiver

log = logging.getLogger(__name__)


def slot_taken(catalog: Catalog, database: str, schedule: str, slot: str) -> bool:
    """Whether a base backup of ``database`` carries this schedule's slot labels."""
    return any(
        b.labels.get("schedule") == schedule and b.labels.get("scheduled_for") == slot
        for b in rows.list_backups(catalog, database=database, include_deleted=True)
    )


def run_backup(
    settings: Settings,
    catalog: Catalog,
    database: str,
    schedule: str,
    slot: str,
    cancel: threading.Event,
) -> PhysicalBackupRecord | None:
    """Take the base backup of one schedule slot, then apply retention; None when it was
    skipped or failed (failures are recorded and notified by :func:`basebackup.create`)."""
    if slot_taken(catalog, database, schedule, slot):
        log.info("physical %s of %s for %s already ran", schedule, database, slot)
        return None
    options = settings.databases[database].schedules[schedule]
    try:
        request = basebackup.PhysicalBackupRequest(
            target=databases.from_config(settings, database),
            incremental=options.incremental,
            trigger="scheduled",
            labels={"schedule": schedule, "scheduled_for": slot},
            created_by="scheduler",
        )
        record = basebackup.create(settings, catalog, request, cancel=cancel)
    except Busy as exc:
        log.warning("physical %s of %s for %s skipped: %s", schedule, database, slot, exc)
        return None
    except PgvaultError as exc:
        log.error("physical %s of %s for %s failed: %s", schedule, database, slot, exc)
        return None
    prune(settings, catalog, database)
    return record


def prune(settings: Settings, catalog: Catalog, database: str | None = None) -> None:
    """Retention of base backups and WAL of ``database`` (None: every pitr database)."""
    for name, db in sorted(settings.databases.items()):
        if not db.pitr or (database is not None and name != database):
            continue
        try:
            report = retention.apply(settings, catalog, name)
        except PgvaultError as exc:
            log.error("retention of %s's base backups failed: %s", name, exc)
            continue
        for problem in report.errors:
            log.error("retention of %s: %s", name, problem)


def start_streams(
    settings: Settings, catalog: Catalog, stop: threading.Event
) -> list[threading.Thread]:
    """One WAL stream thread per pitr database, until ``stop`` is set."""
    return receiver.stream_all(settings, catalog, stop)
