"""Schedules from the config: cron expressions read in a time zone, as APScheduler 3
``CronTrigger``\\ s, and their next run times (no I/O).

Cron expressions have the crontab's 5 fields (minute hour day month weekday, weekday 0 or 7
= Sunday), or 6 with seconds first (``*/3 * * * * *``). APScheduler 3 numbers weekdays from
Monday (its issue 286), so numeric weekdays are translated to names here. Times are
computed in the schedule's zone, so ``0 2 * * *`` in ``Europe/Berlin`` runs at 02:00 local
time on both sides of a DST change (a time skipped by the change runs an hour later, once).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from functools import lru_cache
from typing import Literal

from apscheduler.triggers.cron import CronTrigger

from pgvault.config.settings import Settings
from pgvault.errors import ConfigError
from pgvault.operations.retention import zone

Kind = Literal["backup", "verify", "prune", "files"]
WEEKDAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat", "sun")
GAP_SAMPLES = 60  # fire times sampled per schedule to find its longest gap


@dataclass(frozen=True)
class Schedule:
    """One configured job.

    Attributes:
        kind: ``backup`` (a database's named schedule), ``verify`` (its restore drill),
            ``files`` (a file set's snapshot; ``database`` holds the set's name) or
            ``prune`` (the global cleanup; ``database`` None).
        name: the schedule's name (``verify``/``prune`` for those kinds).
        timezone: the IANA zone the cron is read in.
    """

    kind: Kind
    database: str | None
    name: str
    cron: str
    timezone: str
    enabled: bool
    trigger: CronTrigger = field(compare=False, repr=False)

    @property
    def job_id(self) -> str:
        """``kind:database:name``, unique per configured job."""
        return f"{self.kind}:{self.database or '*'}:{self.name}"


@dataclass(frozen=True)
class ScheduleInfo:
    """A schedule as shown by ``pgvault schedules`` and ``GET /api/v1/schedules``.

    ``next_runs`` are aware UTC datetimes (empty when disabled).
    """

    kind: Kind
    database: str | None
    name: str
    cron: str
    timezone: str
    enabled: bool
    next_runs: list[datetime]


def _weekdays(text: str) -> str:
    """Translate a crontab weekday field (0/7 = Sunday) to APScheduler's day names."""
    out: list[str] = []
    for token in text.lower().split(","):
        base, slash, step_text = token.partition("/")
        step = int(step_text) if slash and step_text.isdigit() else 1
        if slash and not step_text.isdigit():
            raise ConfigError(f"bad step in weekday field {text!r}")
        if base == "*":
            if not slash:
                return "*"
            low, high = 0, 6
        elif base.replace("-", "").isdigit():
            low_text, dash, high_text = base.partition("-")
            low = int(low_text)
            high = int(high_text) if dash else (6 if slash else low)
        else:
            out.append(token)  # names (mon-fri) mean the same in both conventions
            continue
        if not 0 <= low <= high <= 7:
            raise ConfigError(f"weekday field {text!r}: days are 0-7 (0 and 7 = Sunday)")
        out += [WEEKDAYS[day] for day in range(low, high + 1, step)]
    return ",".join(dict.fromkeys(out))


def parse_cron(expr: str, timezone: str | None) -> CronTrigger:
    """A ``CronTrigger`` for a crontab expression read in ``timezone`` (IANA; None = UTC).

    Raises:
        ConfigError: wrong number of fields, a bad field, or an unknown zone.
    """
    tz: tzinfo = zone(timezone)
    fields = expr.split()
    if len(fields) not in (5, 6):
        raise ConfigError(
            f"cron {expr!r} has {len(fields)} fields: give 5 (min hour day month weekday) "
            "or 6 (seconds first)"
        )
    second = fields.pop(0) if len(fields) == 6 else "0"
    minute, hour, day, month, weekday = fields
    try:
        return CronTrigger(
            second=second,
            minute=minute,
            hour=hour,
            day=day,
            month=month,
            day_of_week=_weekdays(weekday),
            timezone=tz,
        )
    except ValueError as exc:
        raise ConfigError(f"cron {expr!r}: {exc}") from exc


def configured(settings: Settings) -> list[Schedule]:
    """Every configured job (enabled or not): each database's backup schedules and restore
    drill, each file set's snapshot schedules, then the global cleanup
    (``scheduler.prune_cron``).

    Raises:
        ConfigError: a cron expression or zone is invalid (names the schedule).
    """
    found: list[Schedule] = []
    for database, db in sorted(settings.databases.items()):
        default_tz = db.timezone or settings.timezone
        entries: list[tuple[Kind, str, str, str, bool]] = [
            ("backup", name, s.cron, s.timezone or default_tz, s.enabled)
            for name, s in sorted(db.schedules.items())
        ]
        if db.verify is not None:
            v = db.verify
            entries.append(("verify", "verify", v.cron, v.timezone or default_tz, v.enabled))
        for kind, name, cron, tz, enabled in entries:
            try:
                trigger = parse_cron(cron, tz)
            except ConfigError as exc:
                raise ConfigError(f"databases.{database}.schedules.{name}: {exc}") from exc
            found.append(Schedule(kind, database, name, cron, tz, enabled, trigger))
    for file_set, cfg in sorted(settings.files.items()):
        for name, f in sorted(cfg.schedules.items()):
            tz = f.timezone or settings.timezone
            try:
                trigger = parse_cron(f.cron, tz)
            except ConfigError as exc:
                raise ConfigError(f"files.{file_set}.schedules.{name}: {exc}") from exc
            found.append(Schedule("files", file_set, name, f.cron, tz, f.enabled, trigger))
    if settings.scheduler.prune_cron:
        cron = settings.scheduler.prune_cron
        try:
            trigger = parse_cron(cron, settings.timezone)
        except ConfigError as exc:
            raise ConfigError(f"scheduler.prune_cron: {exc}") from exc
        found.append(Schedule("prune", None, "prune", cron, settings.timezone, True, trigger))
    return found


def fire_times(trigger: CronTrigger, after: datetime, count: int) -> list[datetime]:
    """The next ``count`` fire times at or after ``after``, as aware UTC datetimes."""
    times: list[datetime] = []
    previous: datetime | None = None
    now = after
    while len(times) < count:
        nxt = trigger.get_next_fire_time(previous, now)
        if nxt is None:
            break
        times.append(nxt.astimezone(UTC))
        previous, now = nxt, nxt + timedelta(microseconds=1)
    return times


def latest_fire_time(trigger: CronTrigger, now: datetime, window: float) -> datetime | None:
    """The newest fire time in ``(now - window, now]`` (UTC), or None.

    Args:
        window: seconds to look back (the misfire grace).
    """
    found = None
    previous: datetime | None = None
    cursor = now - timedelta(seconds=window) + timedelta(microseconds=1)
    while True:
        nxt = trigger.get_next_fire_time(previous, cursor)
        if nxt is None or nxt > now:
            return found
        found = nxt.astimezone(UTC)
        previous, cursor = nxt, nxt + timedelta(microseconds=1)


def next_runs(
    settings: Settings, now: datetime | None = None, count: int = 3
) -> list[ScheduleInfo]:
    """Each configured job with its next ``count`` run times (UTC; none when disabled).

    Raises:
        ConfigError: a cron expression or zone is invalid.
    """
    start = now or datetime.now(UTC)
    return [
        ScheduleInfo(
            s.kind,
            s.database,
            s.name,
            s.cron,
            s.timezone,
            s.enabled,
            fire_times(s.trigger, start, count) if s.enabled else [],
        )
        for s in configured(settings)
    ]


def longest_gap(settings: Settings, database: str, now: datetime | None = None) -> float | None:
    """Seconds between consecutive backups to expect for ``database``: for each enabled
    backup schedule the longest gap among its next fire times, and the smallest of those
    (the schedule that runs most densely bounds the wait). None without enabled schedules.
    """
    return longest_gaps(settings, now).get(database)


def longest_gaps(settings: Settings, now: datetime | None = None) -> dict[str, float]:
    """:func:`longest_gap` of every database with an enabled backup schedule, in one pass.

    Each (cron, time zone) is worked out once per hour of ``now`` and remembered
    (:data:`GAP_SAMPLES` fire times from the start of that hour), so health checks over
    many databases cost a dictionary look-up per schedule.

    Raises:
        ConfigError: a cron expression or zone is invalid (names the schedule).
    """
    hour = (now or datetime.now(UTC)).astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    gaps: dict[str, float] = {}
    for database, db in settings.databases.items():
        default_tz = db.timezone or settings.timezone
        for name, s in db.schedules.items():
            if not s.enabled:
                continue
            try:
                gap = _cron_gap(s.cron, s.timezone or default_tz, hour)
            except ConfigError as exc:
                raise ConfigError(f"databases.{database}.schedules.{name}: {exc}") from exc
            if gap is not None:
                gaps[database] = min(gap, gaps.get(database, gap))
    return gaps


@lru_cache(maxsize=1024)
def _cron_gap(cron: str, timezone: str, start: datetime) -> float | None:
    """The longest gap (seconds) among the :data:`GAP_SAMPLES` fire times of ``cron`` read
    in ``timezone`` from ``start`` on; None if it fires less than twice."""
    times = fire_times(parse_cron(cron, timezone), start, GAP_SAMPLES)
    steps = [(b - a).total_seconds() for a, b in zip(times, times[1:], strict=False)]
    return max(steps) if steps else None
