"""Health, metrics and notifications of file sets, beside the databases'.

Health per file set (``ok`` < ``warning`` < ``critical``), as for databases: ``critical``
when the last snapshot failed or none completed; ``warning`` when the last was interrupted
or the newest completed one is older than the expected staleness (``max_staleness_hours``,
else the longest gap of the set's schedules + 10% + 1 minute, else 26 h).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from pgvault.catalog import Catalog
from pgvault.catalog import files as rows
from pgvault.catalog.files import FileSnapshotRecord
from pgvault.config.operations import DEFAULT_MAX_STALENESS_HOURS
from pgvault.config.settings import Settings
from pgvault.errors import ConfigError
from pgvault.operations.schedules import fire_times, parse_cron

log = logging.getLogger(__name__)

Status = Literal["ok", "warning", "critical"]
LEVELS: dict[Status, int] = {"ok": 0, "warning": 1, "critical": 2}
RECENT_ROWS = 200
GAP_SAMPLES = 60


@dataclass
class FileSetHealth:
    """One file set's health; times aware UTC, ages and staleness in seconds."""

    file_set: str
    status: Status
    reasons: list[str] = field(default_factory=list)
    max_staleness_seconds: float = DEFAULT_MAX_STALENESS_HOURS * 3600
    last_success_at: datetime | None = None
    last_snapshot_id: str | None = None
    last_objects: int | None = None
    last_bytes: int | None = None
    last_duration_seconds: float | None = None
    age_seconds: float | None = None
    last_run_status: str | None = None


def max_staleness(settings: Settings, file_set: str, now: datetime) -> float:
    """Seconds after which the set's newest completed snapshot is stale."""
    cfg = settings.files.get(file_set)
    if cfg is not None and cfg.max_staleness_hours is not None:
        return cfg.max_staleness_hours * 3600
    gaps = []
    for schedule in cfg.schedules.values() if cfg is not None else []:
        if not schedule.enabled:
            continue
        try:
            times = fire_times(
                parse_cron(schedule.cron, schedule.timezone or settings.timezone), now, GAP_SAMPLES
            )
        except ConfigError:
            continue
        steps = [(b - a).total_seconds() for a, b in zip(times, times[1:], strict=False)]
        if steps:
            gaps.append(max(steps))
    return min(gaps) * 1.1 + 60 if gaps else DEFAULT_MAX_STALENESS_HOURS * 3600


def assess(
    file_set: str, history: Sequence[FileSnapshotRecord], staleness: float, now: datetime
) -> FileSetHealth:
    """Judge one set from its rows (pure); ``pre-restore`` safety snapshots do not count."""
    own = [r for r in history if r.trigger != "pre-restore"]
    ended = sorted(
        (r for r in own if r.status in ("completed", "failed", "interrupted")),
        key=lambda r: (r.started_at, r.id),
        reverse=True,
    )
    report = FileSetHealth(file_set, "ok", max_staleness_seconds=staleness)
    levels: list[Status] = []
    if ended:
        last = ended[0]
        report.last_run_status = last.status
        if last.status == "failed":
            levels.append("critical")
            report.reasons.append(f"last snapshot {last.id} failed: {last.error or '?'}")
        elif last.status == "interrupted":
            levels.append("warning")
            report.reasons.append(f"last snapshot {last.id} was interrupted")
    completed = [r for r in ended if r.status == "completed"]
    if not completed:
        levels.append("critical")
        report.reasons.append("no completed snapshot")
    else:
        newest = completed[0]
        when = newest.finished_at or newest.started_at
        report.last_success_at, report.last_snapshot_id = when, newest.id
        report.last_objects, report.last_bytes = newest.objects, newest.bytes
        report.last_duration_seconds = newest.duration_seconds
        report.age_seconds = (now - when).total_seconds()
        if report.age_seconds > staleness:
            levels.append("warning")
            report.reasons.append(
                f"newest completed snapshot is {report.age_seconds / 3600:.1f} h old "
                f"(more than {staleness / 3600:.1f} h)"
            )
    report.status = max(levels, key=LEVELS.__getitem__, default="ok")
    return report


def health(
    settings: Settings, catalog: Catalog, now: datetime | None = None
) -> list[FileSetHealth]:
    """Every configured or catalogued set's health, by name.

    Raises:
        CatalogError: the catalog cannot be read.
    """
    at = now or datetime.now(UTC)
    names = sorted(set(settings.files) | set(rows.file_set_names(catalog)))
    return [
        assess(
            name,
            rows.list_snapshots(catalog, file_set=name, limit=RECENT_ROWS),
            max_staleness(settings, name, at),
            at,
        )
        for name in names
    ]


def metric_families(settings: Settings, catalog: Catalog) -> Iterator[Metric]:
    """``pgvault_files_last_success_timestamp_seconds{file_set}``,
    ``pgvault_files_last_snapshot_objects{file_set}``,
    ``pgvault_files_last_snapshot_bytes{file_set}``, ``pgvault_files_health_status{file_set}``
    (0 ok, 1 warning, 2 critical) and ``pgvault_file_snapshots_total{file_set,status}``."""
    success = GaugeMetricFamily(
        "pgvault_files_last_success_timestamp_seconds",
        "Unix time the newest completed file snapshot finished.",
        labels=["file_set"],
    )
    objects = GaugeMetricFamily(
        "pgvault_files_last_snapshot_objects",
        "Objects in the newest completed file snapshot.",
        labels=["file_set"],
    )
    size = GaugeMetricFamily(
        "pgvault_files_last_snapshot_bytes",
        "Bytes of the objects in the newest completed file snapshot.",
        labels=["file_set"],
    )
    status = GaugeMetricFamily(
        "pgvault_files_health_status",
        "Health per file set: 0 ok, 1 warning, 2 critical.",
        labels=["file_set"],
    )
    for item in health(settings, catalog):
        status.add_metric([item.file_set], LEVELS[item.status])
        if item.last_success_at is not None:
            success.add_metric([item.file_set], item.last_success_at.timestamp())
        if item.last_objects is not None:
            objects.add_metric([item.file_set], item.last_objects)
        if item.last_bytes is not None:
            size.add_metric([item.file_set], item.last_bytes)
    yield from (success, objects, size, status)
    total = CounterMetricFamily(
        "pgvault_file_snapshots",
        "File snapshots in the catalog by set and status.",
        labels=["file_set", "status"],
    )
    for file_set, state, count in rows.counts_by_status(catalog):
        total.add_metric([file_set, state], count)
    yield total
