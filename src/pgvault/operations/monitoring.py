"""Health and Prometheus metrics, computed from the catalog on each call (the history of
backups per day is the catalog's own query: :meth:`pgvault.catalog.stats.StatsRows.history`).

Health per database (``ok`` < ``warning`` < ``critical``), in the manner of Barman's
``last_backup_maximum_age`` and ``last_backup_minimum_size`` checks:

* ``critical``: the last backup run failed, or no completed backup exists;
* ``warning``: retention is held (nothing is deleted: see
  :func:`pgvault.operations.retention.hold_reason`); the last run was interrupted; the
  newest completed backup is older than the expected staleness
  (``freshness.max_staleness_hours``, else the longest gap between the database's
  scheduled backups + 10% + 1 minute, else 26 h); or it is smaller than
  ``freshness.min_size_ratio`` (default 0.5) of the comparable backup before it (same
  format, tables and schemas) - an application that silently lost its data.

Metrics are built into a new ``CollectorRegistry`` per call (no global counters): every
value is read from the catalog, so several pgvault processes report the same numbers.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from pgvault import databases
from pgvault.catalog import Catalog
from pgvault.catalog.newest import NewestRows
from pgvault.catalog.records import BackupRecord
from pgvault.config.operations import DEFAULT_MAX_STALENESS_HOURS
from pgvault.config.settings import Settings
from pgvault.operations import file_health as files_health
from pgvault.operations import prune, schedules
from pgvault.physical import status as physical

Status = Literal["ok", "warning", "critical"]
LEVELS: dict[Status, int] = {"ok": 0, "warning": 1, "critical": 2}

_scheduler_running = False


def set_scheduler_running(running: bool) -> None:
    """Record whether a scheduler runs in this process (for ``pgvault_scheduler_up``)."""
    global _scheduler_running
    _scheduler_running = running


@dataclass
class DatabaseHealth:
    """One database's health.

    Times are aware UTC datetimes; ``age_seconds`` is the newest completed backup's age and
    ``max_staleness_seconds`` the age past which it is stale.
    """

    database: str
    status: Status
    reasons: list[str]
    max_staleness_seconds: float
    last_success_at: datetime | None = None
    last_backup_id: str | None = None
    last_size_bytes: int | None = None
    last_duration_seconds: float | None = None
    age_seconds: float | None = None
    last_run_status: str | None = None
    last_run_at: datetime | None = None


@dataclass
class HealthReport:
    """Every database's and file set's health; ``status`` is the worst of them (``ok``
    when none)."""

    status: Status
    checked_at: datetime
    databases: list[DatabaseHealth] = field(default_factory=list)
    file_sets: list[files_health.FileSetHealth] = field(default_factory=list)


def max_staleness(
    settings: Settings,
    database: str,
    now: datetime | None = None,
    gaps: Mapping[str, float] | None = None,
) -> float:
    """Seconds after which ``database``'s newest completed backup is stale (see the module
    docstring for the order: configured, from the schedules, 26 h).

    Args:
        gaps: :func:`pgvault.operations.schedules.longest_gaps` when the caller has it.
    """
    db = settings.databases.get(database)
    if db is not None and db.freshness.max_staleness_hours is not None:
        return db.freshness.max_staleness_hours * 3600
    if db is not None:
        gap = (gaps if gaps is not None else schedules.longest_gaps(settings, now)).get(database)
        if gap is not None:
            return gap * 1.1 + 60
    return DEFAULT_MAX_STALENESS_HOURS * 3600


COMPARABLE = ("format", "tables", "exclude_tables", "schemas")
"""The fields two backups share to be compared by size."""


def _comparable(a: BackupRecord, b: BackupRecord) -> bool:
    return all(getattr(a, name) == getattr(b, name) for name in COMPARABLE)


def assess(
    database: str,
    history: Sequence[BackupRecord],
    staleness: float,
    min_size_ratio: float,
    now: datetime,
) -> DatabaseHealth:
    """Judge one database from its rows (pure).

    Args:
        history: the database's rows, any order (``deleted`` and ``running`` ones are not
            runs that ended).
        staleness: seconds past which the newest completed backup is stale.
        min_size_ratio: warn below this fraction of the previous comparable size (0: off).
        now: the current time (aware).
    """
    rows = sorted(history, key=lambda r: (r.started_at, r.id), reverse=True)
    ended = [r for r in rows if r.status in ("completed", "failed", "interrupted")]
    completed = [r for r in ended if r.status == "completed"]
    report = DatabaseHealth(database, "ok", [], staleness)
    levels: list[Status] = []
    if ended:
        report.last_run_status, report.last_run_at = ended[0].status, ended[0].started_at
        if ended[0].status == "failed":
            levels.append("critical")
            report.reasons.append(f"last backup {ended[0].id} failed: {ended[0].error or '?'}")
        elif ended[0].status == "interrupted":
            levels.append("warning")
            report.reasons.append(f"last backup {ended[0].id} was interrupted")
    if not completed:
        levels.append("critical")
        report.reasons.append("no completed backup")
    else:
        newest = completed[0]
        when = newest.finished_at or newest.started_at
        report.last_success_at, report.last_backup_id = when, newest.id
        report.last_size_bytes = newest.size_bytes
        report.last_duration_seconds = newest.duration_seconds
        report.age_seconds = (now - when).total_seconds()
        if report.age_seconds > staleness:
            levels.append("warning")
            report.reasons.append(
                f"newest completed backup is {report.age_seconds / 3600:.1f} h old "
                f"(more than {staleness / 3600:.1f} h)"
            )
        shrunk = _size_drop(newest, completed[1:], min_size_ratio)
        if shrunk:
            levels.append("warning")
            report.reasons.append(shrunk)
    report.status = max(levels, key=LEVELS.__getitem__, default="ok")
    return report


def _size_drop(newest: BackupRecord, older: Sequence[BackupRecord], ratio: float) -> str | None:
    """Why ``newest`` is suspiciously small next to the newest comparable older backup
    (below ``ratio`` of its size; 0: off), or None."""
    before = next((r for r in older if _comparable(r, newest)), None)
    if before is None or ratio <= 0 or newest.size_bytes is None or not before.size_bytes:
        return None
    if newest.size_bytes >= ratio * before.size_bytes:
        return None
    return (
        f"newest backup is {newest.size_bytes / before.size_bytes:.0%} of the size of "
        f"the one before ({newest.size_bytes} vs {before.size_bytes} bytes; "
        f"minimum {ratio:.0%})"
    )


@dataclass
class _Reading:
    """What one :func:`one_reading` block read: per catalog (by id), its newest rows and
    the health judged from them."""

    rows: dict[int, Mapping[str, NewestRows]] = field(default_factory=dict)
    reports: dict[int, HealthReport] = field(default_factory=dict)


_reading: ContextVar[_Reading | None] = ContextVar("pgvault_monitoring_reading", default=None)


@contextmanager
def one_reading() -> Iterator[None]:
    """Within the block :func:`health` and :func:`overview` read each catalog's newest rows
    and judge its health once: a report showing both (``GET /health``) costs one reading
    and shows one moment."""
    token = _reading.set(_Reading())
    try:
        yield
    finally:
        _reading.reset(token)


def _newest_rows(catalog: Catalog) -> Mapping[str, NewestRows]:
    memo = _reading.get()
    if memo is None:
        return catalog.newest_rows(COMPARABLE)
    if id(catalog) not in memo.rows:
        memo.rows[id(catalog)] = catalog.newest_rows(COMPARABLE)
    return memo.rows[id(catalog)]


def _judged(settings: Settings, catalog: Catalog, at: datetime) -> HealthReport:
    """:func:`_health` of the catalog's newest rows, once per reading."""
    memo = _reading.get()
    if memo is None:
        return _health(settings, catalog, _newest_rows(catalog), at)
    if id(catalog) not in memo.reports:
        memo.reports[id(catalog)] = _health(settings, catalog, _newest_rows(catalog), at)
    return memo.reports[id(catalog)]


def _with_physical(
    settings: Settings, catalog: Catalog, entry: DatabaseHealth, has_dumps: bool, now: datetime
) -> DatabaseHealth:
    """Fold a ``pitr = true`` database's base backups and WAL archive into its health
    (:func:`pgvault.physical.status.health`); with no dumps at all, its base backups are
    its backups."""
    level, reasons = physical.health(settings, catalog, entry.database, now)
    newest = physical.newest_base_backup(catalog, entry.database)
    if not has_dumps and newest is not None:
        entry = DatabaseHealth(entry.database, "ok", [], entry.max_staleness_seconds)
        entry.last_success_at = newest.finished_at
        entry.last_backup_id, entry.last_size_bytes = newest.id, newest.size_bytes
        entry.last_duration_seconds = newest.duration_seconds
        entry.last_run_status, entry.last_run_at = newest.status, newest.started_at
    entry.reasons += reasons
    entry.status = max(entry.status, level, key=LEVELS.__getitem__)
    return entry


def health(settings: Settings, catalog: Catalog, now: datetime | None = None) -> HealthReport:
    """The health of every configured or catalogued database, from each one's newest rows
    (:meth:`~pgvault.catalog.Catalog.newest_rows`: a few queries whatever the catalog's
    size).

    Raises:
        CatalogError: the catalog cannot be read.
    """
    return _judged(settings, catalog, now or datetime.now(UTC))


def _health(
    settings: Settings, catalog: Catalog, newest: Mapping[str, NewestRows], at: datetime
) -> HealthReport:
    report = HealthReport("ok", at)
    gaps = schedules.longest_gaps(settings, at)
    for name in sorted(set(settings.databases) | set(newest)):
        db = settings.databases.get(name)
        ratio = db.freshness.min_size_ratio if db is not None else 0.5
        rows = newest[name].rows() if name in newest else []
        judged = assess(name, rows, max_staleness(settings, name, at, gaps), ratio, at)
        if db is not None and db.pitr:
            judged = _with_physical(settings, catalog, judged, bool(rows), at)
        hold = prune.hold_of(settings, name, rows, at)
        if hold is not None:
            judged.reasons.append(f"retention held: {hold}; nothing is deleted")
            judged.status = max(judged.status, "warning", key=LEVELS.__getitem__)
        report.databases.append(judged)
    report.file_sets = files_health.health(settings, catalog, at)
    statuses = [d.status for d in report.databases] + [f.status for f in report.file_sets]
    report.status = max(statuses, key=LEVELS.__getitem__, default="ok")
    return report


@dataclass
class DatabaseSummary:
    """One configured database at a glance: where it is, its newest completed backup (with
    its age in seconds) and its health (as :func:`health` judges it)."""

    name: str
    dbname: str
    server: str
    environment: str | None
    restore_target: bool
    newest_backup: BackupRecord | None
    newest_age_seconds: float | None
    status: Status | None
    reasons: list[str]


def overview(
    settings: Settings, catalog: Catalog, now: datetime | None = None
) -> list[DatabaseSummary]:
    """Each configured database with its environment, newest completed backup and health
    status; ``restore_target`` tells whether this process's environment may restore into it.

    Raises:
        CatalogError: the catalog cannot be read.
    """
    at = now or datetime.now(UTC)
    with nullcontext() if _reading.get() is not None else one_reading():  # rows read once
        rows = _newest_rows(catalog)
        status = {db.database: db for db in _judged(settings, catalog, at).databases}
    found = []
    for name in sorted(settings.databases):
        target = databases.from_config(settings, name)
        newest = rows[name].completed if name in rows else None
        judged = status.get(name)
        found.append(
            DatabaseSummary(
                name=name,
                dbname=target.conn.dbname,
                server=target.conn.display(),
                environment=target.environment,
                restore_target=target.environment in (None, settings.environment),
                newest_backup=newest,
                newest_age_seconds=(at - newest.started_at).total_seconds() if newest else None,
                status=judged.status if judged else None,
                reasons=judged.reasons if judged else [],
            )
        )
    return found


class CatalogCollector(Collector):
    """Reads the catalog at each scrape and yields pgvault's metric families."""

    def __init__(self, settings: Settings, catalog: Catalog, scheduler_up: bool | None) -> None:
        self.settings = settings
        self.catalog = catalog
        self.scheduler_up = scheduler_up

    def collect(self) -> Iterator[Metric]:
        """Yield every family (see :func:`metrics_text` for the names)."""
        report = health(self.settings, self.catalog)
        success = GaugeMetricFamily(
            "pgvault_last_success_timestamp_seconds",
            "Unix time the newest completed backup finished.",
            labels=["database"],
        )
        duration = GaugeMetricFamily(
            "pgvault_last_backup_duration_seconds",
            "Duration of the newest completed backup (seconds).",
            labels=["database"],
        )
        size = GaugeMetricFamily(
            "pgvault_last_backup_size_bytes",
            "Stored size of the newest completed backup (bytes).",
            labels=["database"],
        )
        status = GaugeMetricFamily(
            "pgvault_health_status",
            "Health per database: 0 ok, 1 warning, 2 critical.",
            labels=["database"],
        )
        for db in report.databases:
            status.add_metric([db.database], LEVELS[db.status])
            if db.last_success_at is not None:
                success.add_metric([db.database], db.last_success_at.timestamp())
            if db.last_duration_seconds is not None:
                duration.add_metric([db.database], db.last_duration_seconds)
            if db.last_size_bytes is not None:
                size.add_metric([db.database], db.last_size_bytes)
        yield from (success, duration, size, status)
        yield from physical.metric_families(self.settings, self.catalog)
        yield self._backups_total()
        yield self._restores_total()
        yield self._deletions_total()
        yield from files_health.metric_families(self.settings, self.catalog)
        up = self.scheduler_up if self.scheduler_up is not None else _scheduler_running
        yield GaugeMetricFamily(
            "pgvault_scheduler_up", "1 when a scheduler runs in this process.", value=int(up)
        )

    def _backups_total(self) -> Metric:
        family = CounterMetricFamily(
            "pgvault_backups",
            "Backups in the catalog by database and status.",
            labels=["database", "status"],
        )
        for database, state, count in self.catalog.backup_counts():
            family.add_metric([database, state], count)
        return family

    def _restores_total(self) -> Metric:
        family = CounterMetricFamily(
            "pgvault_restores", "Restores in the catalog by status.", labels=["status"]
        )
        for state, count in self.catalog.restore_counts():
            family.add_metric([state], count)
        return family

    def _deletions_total(self) -> Metric:
        family = CounterMetricFamily(
            "pgvault_retention_deletions",
            "Backups deleted by retention, by database.",
            labels=["database"],
        )
        for database, count in self.catalog.pruned_counts():
            family.add_metric([database], count)
        return family


def registry(
    settings: Settings, catalog: Catalog, *, scheduler_up: bool | None = None
) -> CollectorRegistry:
    """A new registry holding a :class:`CatalogCollector` (read at each scrape)."""
    fresh = CollectorRegistry(auto_describe=False)
    fresh.register(CatalogCollector(settings, catalog, scheduler_up))
    return fresh


def metrics_text(
    settings: Settings, catalog: Catalog, *, scheduler_up: bool | None = None
) -> bytes:
    """The Prometheus text exposition (``text/plain; version=0.0.4``) of:

    ``pgvault_last_success_timestamp_seconds{database}``,
    ``pgvault_last_backup_duration_seconds{database}``,
    ``pgvault_last_backup_size_bytes{database}``, ``pgvault_health_status{database}``,
    ``pgvault_backups_total{database,status}``, ``pgvault_restores_total{status}``,
    ``pgvault_retention_deletions_total{database}``, ``pgvault_scheduler_up``.

    Args:
        scheduler_up: override; default whether a scheduler runs in this process.

    Raises:
        CatalogError: the catalog cannot be read.
    """
    return generate_latest(registry(settings, catalog, scheduler_up=scheduler_up))
