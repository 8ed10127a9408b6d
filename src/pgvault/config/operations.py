"""Settings of unattended operation: schedules, retention, restore drills, freshness rules,
notifications and the scheduler itself. Nested into :mod:`pgvault.config.settings`'s models.

Shape in ``pgvault.toml`` (every key optional; env overrides with ``PGVAULT_`` and ``__``,
e.g. ``PGVAULT_DATABASES__APP__SCHEDULES__DAILY__ENABLED=false``)::

    [databases.app.schedules.daily]
    cron = "0 2 * * *"              # 5 fields; 6 fields = seconds first ("*/3 * * * * *")
    timezone = "Asia/Kolkata"       # default: the database's, then the global timezone
    [databases.app.schedules.weekly]
    cron = "0 3 * * 0"
    retention = { keep_weekly = 8 } # this schedule's backups follow their own policy
    [databases.app.retention]       # the database's other backups (manual, other schedules)
    keep_last = 30
    keep_daily = 7
    minimum_redundancy = 3          # the 3 newest completed backups are never deleted
    [databases.app.retention.local] # copies on the target "local" follow their own rules
    keep_last = 2
    [databases.app.verify]
    cron = "0 5 * * 6"              # weekly restore drill of the newest completed backup
    [databases.app.freshness]
    max_staleness_hours = 26        # default: from the schedules, else 26 h
    min_size_ratio = 0.5
    [notifications]
    urls = ["mailtos://user:pass@smtp.example.com?to=ops@example.com"]
    [scheduler]
    misfire_grace_seconds = 3600
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

NotifyEvent = Literal[
    "backup_failed",
    "backup_succeeded",
    "restore_started",
    "restore_finished",
    "restore_failed",
    "verify_failed",
    "freshness_lost",
    "retention_held",
    "files_snapshot_failed",
    "files_snapshot_succeeded",
    "files_restore_finished",
    "files_restore_failed",
    "wal_gap",
]
DEFAULT_EVENTS: tuple[NotifyEvent, ...] = (
    "backup_failed",
    "restore_started",
    "restore_finished",
    "restore_failed",
    "verify_failed",
    "freshness_lost",
    "retention_held",
    "files_snapshot_failed",
    "files_restore_finished",
    "files_restore_failed",
    "wal_gap",
)
"""Events sent unless a ``notifications.events`` list says otherwise (success is opt-in)."""

DEFAULT_MAX_STALENESS_HOURS = 26.0


RULES = ("keep_last", "max_age_days", "keep_daily", "keep_weekly", "keep_monthly", "keep_yearly")
"""The fields of a policy that keep completed backups (combined by union)."""

PERIOD_DAYS = {"daily": 1.0, "weekly": 7.0, "monthly": 31.0, "yearly": 366.0}
"""The longest span of one GFS period, in days."""
_LOCK_DAYS_PER_PERIOD = {"daily": 1.0, "weekly": 7.0, "monthly": 30.0, "yearly": 365.0}


class RetentionSettings(BaseModel):
    """A retention policy (``[databases.NAME.retention]`` or a schedule's ``retention``).

    A completed backup is kept if *any* rule keeps it; with no rule set nothing completed is
    deleted. GFS rules (grandfather-father-son) keep the newest backup of each of the last N
    days/ISO weeks/months/years that have one, as restic and Borg do. The
    ``minimum_redundancy`` newest completed backups (Barman's setting of that name) are kept
    whatever the rules say.

    A sub-table named after a storage target (``[databases.app.retention.offsite]``) is the
    policy of the copies on that target (:attr:`targets`, see :meth:`for_target`).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    keep_last: int | None = Field(
        default=None, ge=1, description="Keep the N newest completed backups."
    )
    max_age_days: float | None = Field(
        default=None, gt=0, description="Keep every completed backup younger than this (days)."
    )
    keep_daily: int | None = Field(
        default=None, ge=1, description="GFS: newest backup of each of the last N days."
    )
    keep_weekly: int | None = Field(
        default=None, ge=1, description="GFS: newest backup of each of the last N ISO weeks."
    )
    keep_monthly: int | None = Field(
        default=None, ge=1, description="GFS: newest backup of each of the last N months."
    )
    keep_yearly: int | None = Field(
        default=None, ge=1, description="GFS: newest backup of each of the last N years."
    )
    minimum_redundancy: int = Field(
        default=3,
        ge=1,
        description="The N newest completed backups are never deleted by any rule, schedule "
        "or API call (Barman's minimum_redundancy). In the database's policy it counts every "
        "backup of the database; in a schedule's, that schedule's backups; in a target's "
        "table, the copies on that target (unset there: no floor of its own).",
    )
    failed_max_age_days: float | None = Field(
        default=7.0,
        gt=0,
        description="Failed and interrupted rows older than this are marked deleted (days).",
    )
    include_pinned: bool = Field(
        default=False, description="Let the rules delete pinned backups too (default: exempt)."
    )
    include_pre_restore: bool = Field(
        default=False,
        description="Let the rules delete pre-restore safety backups (default: exempt).",
    )
    timezone: str | None = Field(
        default=None,
        description="IANA zone whose calendar days/weeks/months GFS counts in (default UTC).",
    )
    targets: dict[str, RetentionSettings] = Field(
        default_factory=dict,
        description="Policies of the copies on one storage target, by target name (written "
        "as sub-tables: [databases.app.retention.local]).",
    )

    @model_validator(mode="before")
    @classmethod
    def _collect_target_tables(cls, data: Any) -> Any:
        """Move sub-tables named after storage targets into :attr:`targets`."""
        if not isinstance(data, dict):
            return data
        tables = {
            key: value
            for key, value in data.items()
            if key not in cls.model_fields and isinstance(value, dict | RetentionSettings)
        }
        if not tables:
            return data
        rest = {key: value for key, value in data.items() if key not in tables}
        rest["targets"] = {**dict(data.get("targets") or {}), **tables}
        return rest

    @model_validator(mode="after")
    def _flat_targets(self) -> RetentionSettings:
        for name, own in self.targets.items():
            if own.targets:
                raise ValueError(f"the retention of target {name!r} cannot have targets itself")
        return self

    def has_rules(self) -> bool:
        """Whether any rule that keeps completed backups is set."""
        return any(getattr(self, rule) is not None for rule in RULES)

    def for_target(self, name: str) -> RetentionSettings:
        """The policy of the copies on storage target ``name``.

        The target's table, when there is one, replaces the rules (``keep_*``,
        ``max_age_days``) if it sets any, and any other field it sets; the rest comes from
        this policy. Without a table: this policy.
        """
        own = self.targets.get(name)
        if own is None:
            return self
        given = own.model_fields_set
        values = self.model_dump(exclude={"targets"})
        if any(rule in given for rule in RULES):
            values.update({rule: getattr(own, rule) for rule in RULES})
        values.update({f: getattr(own, f) for f in given - set(RULES) - {"targets"}})
        return RetentionSettings(**values)

    def target_floor(self, name: str) -> int:
        """The copies on target ``name`` always kept: its table's ``minimum_redundancy``
        when it sets one, else 0 (the backups' own floor still keeps one copy of each)."""
        own = self.targets.get(name)
        if own is None or "minimum_redundancy" not in own.model_fields_set:
            return 0
        return own.minimum_redundancy

    def shortest_period_days(self) -> float | None:
        """The shortest period of the time-based rules, in days: ``max_age_days``, one day
        for ``keep_daily``, 7 for weekly, 31 for monthly, 366 for yearly; None when only
        ``keep_last`` (or nothing) is set. Retention deletes nothing while no completed
        backup is newer than this (see :func:`pgvault.operations.retention.hold_reason`)."""
        spans = [PERIOD_DAYS[name] for name in PERIOD_DAYS if getattr(self, f"keep_{name}")]
        if self.max_age_days is not None:
            spans.append(self.max_age_days)
        return min(spans, default=None)

    def lock_days(self) -> float | None:
        """The S3 Object Lock period this policy implies, in days: the shortest time a
        time-based rule keeps a backup (``max_age_days``; N days for ``keep_daily`` N, 7N for
        weekly, 30N for monthly, 365N for yearly); None for count-only policies.

        A copy locked longer than the policy keeps it is skipped by retention until its
        lock ends; a shorter lock never blocks a deletion the policy wants.
        """
        spans = [
            _LOCK_DAYS_PER_PERIOD[name] * count
            for name in _LOCK_DAYS_PER_PERIOD
            if (count := getattr(self, f"keep_{name}")) is not None
        ]
        if self.max_age_days is not None:
            spans.append(self.max_age_days)
        return min(spans, default=None)


class ScheduleSettings(BaseModel):
    """One scheduled backup (``[databases.NAME.schedules.SCHEDULE]``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    cron: str = Field(
        description="Crontab expression: 5 fields (min hour day month weekday), or 6 with "
        "seconds first."
    )
    timezone: str | None = Field(
        default=None,
        description="IANA zone the cron is read in (DST-aware); default the database's "
        "timezone, then the global one.",
    )
    enabled: bool = Field(default=True, description="Run this schedule (false: listed only).")
    format: Literal["custom", "plain", "directory"] | None = Field(
        default=None, description="pg_dump format for this schedule (default: the database's)."
    )
    compression: Literal["zstd", "gzip", "none"] | None = Field(
        default=None, description="Compression method for this schedule."
    )
    level: int | None = Field(default=None, description="Compression level for this schedule.")
    tables: list[str] = Field(default_factory=list, description="Only these tables.")
    exclude_tables: list[str] = Field(default_factory=list, description="Skip these tables.")
    schemas: list[str] = Field(default_factory=list, description="Only these schemas.")
    storage: str | None = Field(
        default=None, description="Storage target name or URL (default: the database's first)."
    )
    physical: bool = Field(
        default=False, description="A base backup (pg_basebackup) instead of a dump (pitr)."
    )
    incremental: bool = Field(
        default=False, description="physical: against the previous base backup (17+)."
    )
    retention: RetentionSettings | None = Field(
        default=None,
        description="Policy for this schedule's backups alone (default: the database's).",
    )


class VerifyScheduleSettings(BaseModel):
    """The restore drill (``[databases.NAME.verify]``): full verification of the newest
    completed backup (restore into a scratch database, compare row counts, drop it)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    cron: str = Field(description="Crontab expression (5 fields, or 6 with seconds first).")
    timezone: str | None = Field(default=None, description="IANA zone the cron is read in.")
    enabled: bool = Field(default=True, description="Run the drill.")
    server_url: str | None = Field(
        default=None,
        description="Server for the scratch database (default: the database's own server).",
    )


class FreshnessSettings(BaseModel):
    """Freshness and size rules (``[databases.NAME.freshness]``), after Barman's
    ``last_backup_maximum_age`` and ``last_backup_minimum_size``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_staleness_hours: float | None = Field(
        default=None,
        gt=0,
        description="Warn when the newest completed backup is older than this (hours); "
        "default: the longest gap of the backup schedules + 10%, else 26 h.",
    )
    min_size_ratio: float = Field(
        default=0.5,
        ge=0,
        le=1,
        description="Warn when the newest backup is smaller than this fraction of the one "
        "before (0 disables).",
    )


class DatabaseNotifySettings(BaseModel):
    """Per-database notification targets (``[databases.NAME.notifications]``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    urls: list[str] = Field(
        default_factory=list,
        description="apprise URLs told about this database, besides the global ones.",
    )
    events: list[NotifyEvent] | None = Field(
        default=None, description="Events sent for this database (default: the global list)."
    )


class NotificationSettings(BaseModel):
    """Notifications (``[notifications]``) through apprise: mailto(s)://, slack://,
    discord://, tgram://, msteams://, json://, ... (https://github.com/caronc/apprise)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    urls: list[str] = Field(
        default_factory=list, description="apprise URLs told about every database."
    )
    events: list[NotifyEvent] = Field(
        default_factory=lambda: list(DEFAULT_EVENTS),
        description="Events sent: backup_failed, backup_succeeded (opt-in), restore_started, "
        "restore_finished, restore_failed, verify_failed, freshness_lost, retention_held, "
        "files_snapshot_failed, files_snapshot_succeeded (opt-in), files_restore_finished, "
        "files_restore_failed.",
    )
    public_url: str | None = Field(
        default=None,
        description="Base URL of the pgvault UI; messages then link to <public_url>/backups/<id>.",
    )


class SchedulerSettings(BaseModel):
    """The scheduler (``[scheduler]``) run by ``pgvault scheduler`` and ``pgvault serve``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    misfire_grace_seconds: int = Field(
        default=3600,
        ge=1,
        description="A run missed by at most this many seconds (process down, busy) still "
        "runs, once (missed runs are coalesced).",
    )
    shutdown_grace_seconds: float = Field(
        default=60.0,
        ge=0,
        description="On SIGTERM a running backup may finish within this many seconds; then it "
        "is stopped and marked interrupted.",
    )
    prune_cron: str | None = Field(
        default="17 * * * *",
        description="The cleanup schedule applying retention to every database (None: only "
        "after each scheduled backup).",
    )
    freshness_check_seconds: int = Field(
        default=300, ge=1, description="How often freshness and size rules are checked (s)."
    )
    workers: int = Field(default=4, ge=1, description="Scheduled jobs that may run at once.")
