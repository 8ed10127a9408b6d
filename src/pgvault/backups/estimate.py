"""How big a running backup will be, for its percent and time left.

The estimate of the stored size is, in order:

1. the size of the previous completed backup of the same database in the same form
   (format and compression): a scheduled backup is rarely far from its predecessor;
2. otherwise the database scaled by the ratio observed so far: pg_dump's server session
   reports its ``COPY ... TO stdout`` in ``pg_stat_progress_copy`` (PostgreSQL >= 14); the
   share of the dumped tables' ``pg_table_size`` already copied (finished tables, plus the
   current one by ``tuples_processed`` of its ``reltuples``) divides the bytes stored so far.

:class:`CopyWatcher` polls that view from its own connection once a second while pg_dump
runs (finding pg_dump's session by the ``application_name`` pgvault gives it).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

from pgvault.catalog.records import BackupRecord
from pgvault.errors import PgvaultError
from pgvault.postgres import server
from pgvault.postgres.conninfo import ConnInfo

log = logging.getLogger(__name__)

TABLE_SIZES_SQL = """
SELECT c.oid::bigint, pg_table_size(c.oid), greatest(c.reltuples, 0)::float8
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg_toast%'
"""
COPY_PROGRESS_SQL = """
SELECT p.relid::bigint, p.tuples_processed FROM pg_stat_progress_copy p
JOIN pg_stat_activity a ON a.pid = p.pid
WHERE a.application_name = %s AND p.command = 'COPY TO'
"""


def previous_size(history: Sequence[BackupRecord], dump_format: str, method: str) -> int | None:
    """The stored size of the newest completed backup in ``history`` (newest first) of the
    same format and compression, or None."""
    for record in history:
        same = (record.format, record.compression) == (dump_format, method)
        if record.status == "completed" and same and record.size_bytes:
            return record.size_bytes
    return None


@dataclass
class BackupEstimate:
    """The running estimate of a backup's stored size (bytes).

    Attributes:
        previous: the previous backup's size (method 1), if known.
        tables: table oid -> ``(pg_table_size bytes, reltuples)`` of the dumped database.
    """

    previous: int | None = None
    tables: dict[int, tuple[int, float]] = field(default_factory=dict)
    _finished: set[int] = field(default_factory=set)
    _current: tuple[int, int] | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def copying(self, relid: int, tuples: int) -> None:
        """pg_dump's session is copying ``relid``, ``tuples`` rows so far."""
        with self._lock:
            if self._current is not None and self._current[0] != relid:
                self._finished.add(self._current[0])
            self._current = (relid, tuples)

    def share_copied(self) -> float | None:
        """The share (0-1) of the tables' bytes copied so far, or None when unknown."""
        total = sum(size for size, _rows in self.tables.values())
        with self._lock:
            if not total or self._current is None:
                return None
            done = sum(self.tables.get(oid, (0, 0.0))[0] for oid in self._finished)
            relid, tuples = self._current
            size, rows = self.tables.get(relid, (0, 0.0))
            if rows > 0:
                done += int(size * min(1.0, tuples / rows))
        return min(1.0, done / total)

    def total(self, stored: int) -> int | None:
        """The estimated final stored size, given ``stored`` bytes so far."""
        if self.previous:
            return max(self.previous, stored)
        share = self.share_copied()
        if share is None or share < 0.01:
            return None
        return max(stored, int(stored / share))


class CopyWatcher:
    """Polls ``pg_stat_progress_copy`` for pg_dump's session into a :class:`BackupEstimate`
    (a thread with its own connection; any failure only stops the estimate)."""

    def __init__(self, conn: ConnInfo, app_name: str, estimate: BackupEstimate) -> None:
        self._conn = conn
        self._app_name = app_name
        self._estimate = estimate
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="copy-progress", daemon=True)

    def _run(self) -> None:
        try:
            with server.connect(self._conn) as conn:
                while not self._stop.wait(1.0):
                    rows = conn.execute(COPY_PROGRESS_SQL, (self._app_name,)).fetchall()
                    for relid, tuples in rows:
                        self._estimate.copying(int(str(relid)), int(str(tuples)))
        except (PgvaultError, OSError, ValueError) as exc:
            log.debug("no copy progress: %s", exc)
        except Exception as exc:  # noqa: BLE001 - psycopg errors: the estimate is optional
            log.debug("no copy progress: %s", exc)

    def __enter__(self) -> CopyWatcher:
        if self._estimate.previous is None and self._estimate.tables:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread.ident is not None:
            self._thread.join(5)
