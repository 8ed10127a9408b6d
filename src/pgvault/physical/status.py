"""How a database's WAL archive is doing, and which times it can be recovered to.

* :func:`wal_status`: ``wal status`` - streaming or not, the last archived segment, lag and
  the WAL the server's slot retains (asked from the server when reachable, else the
  stream's last heartbeat).
* :func:`recoverable_window`: from the end of the oldest completed base backup to the end
  of the archive (the web UI's time picker), cut at the first gap after it.
* :func:`health`: the reasons health reports: ``critical`` for no base backup or a gap
  after the newest one; ``warning`` when the slot retains more than ``slot_warning_mib``
  (a stopped pgvault must never fill the server's disk unnoticed) or no stream beats.
"""

from __future__ import annotations

import os
import socket
from datetime import UTC, datetime, timedelta
from typing import Literal

import psutil
from prometheus_client.core import GaugeMetricFamily, Metric
from pydantic import BaseModel, Field

from pgvault.catalog import Catalog
from pgvault.catalog import physical as rows
from pgvault.catalog.physical import WalSegmentRecord, WalStreamRecord
from pgvault.config.settings import Settings
from pgvault.databases import DatabaseTarget, from_config
from pgvault.errors import PgvaultError
from pgvault.physical import archive as wal_archive
from pgvault.physical import serverinfo, walnames
from pgvault.physical.receiver import slot_name

Level = Literal["ok", "warning", "critical"]
STALE_BEAT = timedelta(seconds=60)


class WalStatus(BaseModel):
    """``pgvault wal status`` of one database (bytes; aware UTC times)."""

    database: str
    streaming: bool
    last_archived_segment: str | None
    last_archived_at: datetime | None
    lag_bytes: int | None
    slot_retained_bytes: int | None
    archived_segments: int
    slot: str
    stream_status: str | None = None
    stream_error: str | None = None
    gaps: list[str] = Field(default_factory=list)
    server_error: str | None = None


def _end_lsn(record: WalSegmentRecord | None, segment_size: int) -> int | None:
    if record is None or record.segment_number is None:
        return None
    return walnames.Segment(record.timeline, record.segment_number).end_lsn(segment_size)


def beating(stream: WalStreamRecord | None, now: datetime) -> bool:
    """Whether a stream process recorded ``streaming`` recently and (on this host) lives."""
    if stream is None or stream.status != "streaming" or stream.heartbeat_at is None:
        return False
    if now - stream.heartbeat_at > STALE_BEAT:
        return False
    host, _, pid = (stream.runner or "").rpartition(":")
    if host == socket.gethostname() and pid.isdigit() and int(pid) != os.getpid():
        return bool(psutil.pid_exists(int(pid)))
    return True


def wal_status(
    settings: Settings, catalog: Catalog, target: DatabaseTarget, *, ask_server: bool = True
) -> WalStatus:
    """The state of ``target``'s WAL archive (see the module docstring)."""
    del settings
    now = datetime.now(UTC)
    newest = rows.newest_segment(catalog, target.name)
    stream = rows.get_stream(catalog, target.name)
    status = WalStatus(
        database=target.name,
        streaming=beating(stream, now),
        last_archived_segment=newest.name if newest else None,
        last_archived_at=newest.archived_at if newest else None,
        lag_bytes=None,
        slot_retained_bytes=stream.slot_retained_bytes if stream else None,
        archived_segments=rows.count_segments(catalog, target.name),
        slot=slot_name(target),
        stream_status=stream.status if stream else None,
        stream_error=stream.last_error if stream else None,
        gaps=[g.describe() for g in wal_archive.gaps(catalog, database=target.name)],
    )
    current = stream.server_lsn if stream else None
    size = walnames.DEFAULT_SEGMENT_SIZE
    if ask_server:
        try:
            identity = serverinfo.identify(target.conn)
            slot = serverinfo.slot_state(target.conn, status.slot)
            current, size = identity.current_lsn, identity.segment_size
            status.slot_retained_bytes = slot.retained_bytes if slot else None
            status.streaming = bool(slot and slot.active) and status.stream_status == "streaming"
        except PgvaultError as exc:
            status.server_error = str(exc)
    end = _end_lsn(newest, size)
    if current is not None:
        status.lag_bytes = max(0, current - end) if end is not None else current
    return status


class RecoverableWindow(BaseModel):
    """The times ``database`` can be recovered to, UTC: ``start`` (the end of its oldest
    completed base backup) to ``end`` (when the last segment of the unbroken archive after
    it was archived: a few seconds past its last commit). None when nothing is recoverable.
    """

    database: str
    start: datetime | None
    end: datetime | None
    base_backups: int
    gaps: list[str] = Field(default_factory=list)


def recoverable_window(catalog: Catalog, database: str) -> RecoverableWindow:
    """The recoverable window of ``database`` (catalog only)."""
    done = [
        b
        for b in rows.list_backups(catalog, database=database, status="completed")
        if b.finished_at is not None and b.system_identifier is not None
    ]
    gaps = wal_archive.gaps(catalog, database=database)
    window = RecoverableWindow(
        database=database,
        start=None,
        end=None,
        base_backups=len(done),
        gaps=[g.describe() for g in gaps],
    )
    if not done:
        return window
    newest_backup = done[0]
    sysid = newest_backup.system_identifier
    window.start = min(b.finished_at for b in done if b.finished_at is not None)
    segments = rows.segments(catalog, system_identifier=sysid, history=False)
    size = newest_backup.segment_size or walnames.DEFAULT_SEGMENT_SIZE
    start = walnames.parse_segment(newest_backup.start_wal or "", size)
    ends_before = {g.first for g in gaps if g.system_identifier == sysid}
    last: WalSegmentRecord | None = None
    for record in segments:
        if record.timeline < start.timeline or (record.segment_number or 0) < start.number:
            continue
        if record.name in ends_before:
            break
        if last is not None and record.timeline == last.timeline:
            following = walnames.Segment(last.timeline, (last.segment_number or 0) + 1)
            if following.name(size) in ends_before:
                break
        last = record
    finished = newest_backup.finished_at
    window.end = max(last.archived_at, finished) if last and finished else None
    return window


def health(
    settings: Settings, catalog: Catalog, database: str, now: datetime
) -> tuple[Level, list[str]]:
    """The health of ``database``'s physical backups and WAL archive (catalog only).

    Returns:
        ``(level, reasons)``; ``ok`` with no reasons when all is well.
    """
    db = settings.databases.get(database)
    if db is None or not db.pitr:
        return "ok", []
    levels: list[Level] = []
    reasons: list[str] = []
    history = rows.list_backups(catalog, database=database)
    ended = [b for b in history if b.status in ("completed", "failed", "interrupted")]
    if ended and ended[0].status == "failed":
        levels.append("critical")
        reasons.append(f"last base backup {ended[0].id} failed: {ended[0].error or '?'}")
    done = [b for b in history if b.status == "completed"]
    if not done:
        levels.append("critical")
        reasons.append("no completed physical base backup (pitr = true)")
    else:
        after = [g for g in wal_archive.gaps(catalog, database=database) if _after(g, done[0])]
        if after:
            levels.append("critical")
            reasons.append(f"{after[0].describe()}: take a new base backup")
    stream = rows.get_stream(catalog, database)
    if not beating(stream, now):
        levels.append("warning")
        state = stream.status if stream else "never started"
        reasons.append(f"no WAL stream is running ({state}): run 'pgvault wal stream'")
    retained = stream.slot_retained_bytes if stream else None
    if retained is not None and retained > db.slot_warning_mib * 1024 * 1024:
        levels.append("warning")
        reasons.append(
            f"replication slot retains {retained // (1024 * 1024)} MiB of WAL on the server "
            f"(more than {db.slot_warning_mib} MiB)"
        )
    order = {"ok": 0, "warning": 1, "critical": 2}
    return max(levels, key=order.__getitem__, default="ok"), reasons


def _after(gap: wal_archive.Gap, backup: rows.PhysicalBackupRecord) -> bool:
    if gap.system_identifier != backup.system_identifier or backup.start_wal is None:
        return False
    return gap.first > backup.start_wal


def newest_base_backup(catalog: Catalog, database: str) -> rows.PhysicalBackupRecord | None:
    """The newest completed base backup of ``database``, or None."""
    done = rows.list_backups(catalog, database=database, status="completed")
    return done[0] if done else None


def metric_families(settings: Settings, catalog: Catalog) -> list[Metric]:
    """Prometheus gauges of every ``pitr = true`` database (read from the catalog):
    ``pgvault_wal_archived_segments``, ``pgvault_wal_last_archived_timestamp_seconds``,
    ``pgvault_wal_lag_bytes`` and ``pgvault_wal_slot_retained_bytes`` (as of the stream's
    last heartbeat), ``pgvault_wal_streaming`` (0/1) and ``pgvault_wal_gaps``."""
    now = datetime.now(UTC)
    families = {
        "archived": GaugeMetricFamily(
            "pgvault_wal_archived_segments", "WAL segments in the archive.", labels=["database"]
        ),
        "last": GaugeMetricFamily(
            "pgvault_wal_last_archived_timestamp_seconds",
            "Unix time the newest WAL segment was archived.",
            labels=["database"],
        ),
        "lag": GaugeMetricFamily(
            "pgvault_wal_lag_bytes",
            "WAL written by the server and not yet archived (bytes).",
            labels=["database"],
        ),
        "retained": GaugeMetricFamily(
            "pgvault_wal_slot_retained_bytes",
            "WAL the server keeps for pgvault's replication slot (bytes).",
            labels=["database"],
        ),
        "streaming": GaugeMetricFamily(
            "pgvault_wal_streaming", "1 when a WAL stream runs.", labels=["database"]
        ),
        "gaps": GaugeMetricFamily(
            "pgvault_wal_gaps", "Gaps in the WAL archive.", labels=["database"]
        ),
    }
    for name, db in sorted(settings.databases.items()):
        if not db.pitr:
            continue
        found = wal_status(settings, catalog, from_config(settings, name), ask_server=False)
        families["archived"].add_metric([name], found.archived_segments)
        if found.last_archived_at is not None:
            families["last"].add_metric([name], found.last_archived_at.timestamp())
        if found.lag_bytes is not None:
            families["lag"].add_metric([name], found.lag_bytes)
        if found.slot_retained_bytes is not None:
            families["retained"].add_metric([name], found.slot_retained_bytes)
        families["streaming"].add_metric([name], int(beating(rows.get_stream(catalog, name), now)))
        families["gaps"].add_metric([name], len(found.gaps))
    return list(families.values())
