"""Retention decisions: pure functions over catalog rows (no I/O, no clock).

:func:`decide` answers, for one scope (a database's backups, or one schedule's), which rows
to keep and why; :func:`decide_database` splits a database's history into its scopes and
adds the database-wide floor; :func:`hold_reason` says when retention must delete nothing.
:mod:`pgvault.operations.retention_copies` turns that into decisions per stored copy and
:mod:`pgvault.operations.prune` applies them.

Rules of a :class:`~pgvault.config.operations.RetentionSettings` policy, combined by union (a
completed backup is kept if *any* rule keeps it):

* ``keep_last`` N: the N newest completed backups;
* ``max_age_days`` D: every completed backup started less than D days before ``now``;
* GFS (grandfather-father-son, as in restic's ``--keep-daily`` and Borg's ``prune``):
  ``keep_daily``/``keep_weekly``/``keep_monthly``/``keep_yearly`` N keep the newest completed
  backup of each of the N most recent calendar days / ISO weeks / months / years *that have
  one*, counted in the policy's time zone (default UTC).

Safety rules, whatever the policy says:

* with no rule set, nothing completed is deleted;
* ``minimum_redundancy`` (Barman's name; default 3): the N newest completed backups of the
  database (N from the database's policy) and of each scope (N from the scope's policy) are
  never deleted, so a deletion always has completed successors;
* the hold (:func:`hold_reason`): while the newest backup attempt failed, or no completed
  backup is newer than the shortest period of the policies, nothing is deleted at all
  (pgbackweb #121: a policy that kept deleting while backups failed until none was left);
* ``running`` rows are never touched; ``deleted`` rows are ignored;
* ``pinned`` and ``pre-restore`` backups are exempt unless the policy includes them;
* ``failed`` and ``interrupted`` rows are deleted once older than ``failed_max_age_days``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Protocol, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pgvault.config.operations import RetentionSettings
from pgvault.errors import ConfigError

SCHEDULE_LABEL = "schedule"
"""Label carrying the name of the schedule that made a backup."""

Period = Callable[[datetime], tuple[int, ...]]


class Retained(Protocol):
    """What retention reads of a row: a database backup or a file snapshot."""

    @property
    def id(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def trigger(self) -> str: ...
    @property
    def started_at(self) -> datetime: ...
    @property
    def pinned(self) -> bool: ...
    @property
    def labels(self) -> dict[str, str]: ...


R = TypeVar("R", bound=Retained)

PERIODS: dict[str, Period] = {
    "daily": lambda t: (t.year, t.month, t.day),
    "weekly": lambda t: tuple(t.isocalendar()[:2]),
    "monthly": lambda t: (t.year, t.month),
    "yearly": lambda t: (t.year,),
}
"""GFS period keys of a local time: ISO weeks start on Monday."""


FLOOR = "minimum_redundancy"
"""The reason of every row kept by a ``minimum_redundancy`` floor starts with this."""

HOLD_GRACE = 1.1
"""Factor on the shortest period before a missing completed backup holds retention (a
backup of the period may still be running), as the freshness check allows 10 %."""


@dataclass(frozen=True)
class CopyDecision:
    """What happens to a completed backup's copy on one storage target.

    Attributes:
        target: the storage target's name (or URL) holding the copy.
        keep: False when the copy is to be deleted.
        reasons: why, as in :class:`Decision`.
    """

    target: str
    keep: bool
    reasons: tuple[str, ...]


@dataclass(frozen=True)
class Decision:
    """What happens to one backup row.

    Attributes:
        backup_id: the row's id.
        keep: False when the row is to be deleted (for a completed backup: every copy).
        reasons: why, e.g. ``("keep_last 3",)``, ``("daily 2024-05-01",)``,
            ``("minimum_redundancy 3",)``, ``("no rule keeps it (keep_last 3, daily 7)",)``,
            ``("failed, older than 7 days",)``.
        copies: for a completed backup, one decision per stored copy, primary first (empty
            when only the row was decided, as :func:`decide` does).
    """

    backup_id: str
    keep: bool
    reasons: tuple[str, ...]
    copies: tuple[CopyDecision, ...] = ()


def has_rules(policy: RetentionSettings) -> bool:
    """Whether ``policy`` sets any rule that keeps completed backups."""
    return policy.has_rules()


def describe(policy: RetentionSettings) -> str:
    """The policy's rules as text: ``keep_last 3, max_age 30 d, daily 7``."""
    parts = []
    if policy.keep_last is not None:
        parts.append(f"keep_last {policy.keep_last}")
    if policy.max_age_days is not None:
        parts.append(f"max_age {policy.max_age_days:g} d")
    for name in PERIODS:
        count = getattr(policy, f"keep_{name}")
        if count is not None:
            parts.append(f"{name} {count}")
    return ", ".join(parts) or "no rules"


def zone(name: str | None) -> tzinfo:
    """The time zone ``name`` (IANA), UTC when None.

    Raises:
        ConfigError: unknown zone name.
    """
    if name is None or name == "UTC":
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ConfigError(
            f"unknown time zone {name!r}: use an IANA name like Europe/Paris"
        ) from exc


def _newest_first(rows: Iterable[R]) -> list[R]:
    return sorted(rows, key=lambda r: (r.started_at, r.id), reverse=True)


def _exemption(record: Retained, policy: RetentionSettings) -> str | None:
    if record.pinned and not policy.include_pinned:
        return "pinned"
    if record.trigger == "pre-restore" and not policy.include_pre_restore:
        return "pre-restore safety backup"
    return None


def gfs_keep(
    completed: Sequence[Retained], period: Period, count: int, tz: tzinfo
) -> dict[str, str]:
    """The newest backup of each of the ``count`` most recent periods that have one.

    Args:
        completed: completed backups (any order).
        period: maps a local time to its period key (see :data:`PERIODS`).
        count: how many periods to keep.
        tz: the zone whose calendar the periods follow.

    Returns:
        ``{backup_id: period label}`` with at most ``count`` entries, one per period.
    """
    kept: dict[str, str] = {}
    seen: set[tuple[int, ...]] = set()
    for record in _newest_first(completed):
        key = period(record.started_at.astimezone(tz))
        if key in seen:
            continue
        if len(seen) == count:
            break
        seen.add(key)
        kept[record.id] = "-".join(f"{part:02d}" for part in key)
    return kept


def newest_completed(rows: Iterable[R], count: int) -> list[R]:
    """The ``count`` newest completed rows of ``rows``, newest first."""
    return _newest_first(r for r in rows if r.status == "completed")[:count]


def decide(
    history: Sequence[Retained],
    policy: RetentionSettings,
    now: datetime,
    *,
    floor: int | None = None,
    gfs: bool = True,
) -> list[Decision]:
    """Decide the fate of every row of one scope under ``policy``.

    Args:
        history: the scope's rows (any order; ``deleted`` ones are skipped).
        policy: the rules (see the module docstring).
        now: the current time (aware; UTC or any zone).
        floor: how many of the newest completed rows are always kept (default the
            policy's ``minimum_redundancy``; 0 for a target's copies without a floor).
        gfs: apply the GFS rules; False when they are known to keep only rows that are
            not in ``history`` and kept anyway (see :func:`covers`).

    Returns:
        One :class:`Decision` per non-deleted row, newest first. The database-wide floor
        across scopes is :func:`decide_database`'s.

    Raises:
        ConfigError: the policy's time zone is unknown.
    """
    tz = zone(policy.timezone)
    rows = _newest_first(r for r in history if r.status != "deleted")
    reasons: dict[str, list[str]] = {r.id: [] for r in rows}
    exempt = {r.id: e for r in rows if (e := _exemption(r, policy)) is not None}
    completed = [r for r in rows if r.status == "completed"]
    pool = [r for r in completed if r.id not in exempt]
    keep_floor = policy.minimum_redundancy if floor is None else floor
    for record in completed[:keep_floor]:
        reasons[record.id].append(f"{FLOOR} {keep_floor}")
    if policy.keep_last is not None:
        for record in pool[: policy.keep_last]:
            reasons[record.id].append(f"keep_last {policy.keep_last}")
    if policy.max_age_days is not None:
        cutoff = now - timedelta(days=policy.max_age_days)
        for record in pool:
            if record.started_at > cutoff:
                reasons[record.id].append(f"max_age {policy.max_age_days:g} d")
    for name, period in PERIODS.items():
        count = getattr(policy, f"keep_{name}") if gfs else None
        if count is not None:
            for backup_id, label in gfs_keep(pool, period, count, tz).items():
                reasons[backup_id].append(f"{name} {label}")
    return [
        _judge(record, reasons[record.id], exempt.get(record.id), policy, now) for record in rows
    ]


def _judge(
    record: Retained,
    why: list[str],
    exemption: str | None,
    policy: RetentionSettings,
    now: datetime,
) -> Decision:
    """One row's decision from the reasons the rules gave it."""
    if exemption is not None:
        why.insert(0, exemption)
    if record.status == "running":
        why.append("running")
    elif record.status in ("failed", "interrupted"):
        limit = policy.failed_max_age_days
        if limit is None:
            why.append(f"{record.status}, failed_max_age_days unset")
        elif record.started_at > now - timedelta(days=limit):
            why.append(f"{record.status}, younger than {limit:g} days")
        else:
            return Decision(record.id, False, (f"{record.status}, older than {limit:g} days",))
    elif not why and not has_rules(policy):
        why.append("no retention policy")
    if why:
        return Decision(record.id, True, tuple(why))
    return Decision(record.id, False, (f"no rule keeps it ({describe(policy)})",))


def scopes(
    history: Sequence[R], schedule_policies: Mapping[str, RetentionSettings]
) -> dict[str | None, list[R]]:
    """The rows of each scope: ``schedule=S`` rows with S in ``schedule_policies`` under
    ``S``, every other row under None (the database's policy)."""
    found: dict[str | None, list[R]] = {}
    for record in history:
        label = record.labels.get(SCHEDULE_LABEL)
        found.setdefault(label if label in schedule_policies else None, []).append(record)
    return found


def protected(
    history: Sequence[Retained],
    policy: RetentionSettings | None,
    schedule_policies: Mapping[str, RetentionSettings] | None = None,
) -> dict[str, str]:
    """The rows no rule, schedule or API call may delete: ``{backup id: reason}``.

    The database's ``minimum_redundancy`` newest completed backups (whatever their scope),
    and each schedule scope's own ``minimum_redundancy`` newest.
    """
    own = dict(schedule_policies or {})
    base = policy or RetentionSettings()
    found: dict[str, str] = {}
    for scope, rows in scopes(history, own).items():
        floor = own[scope].minimum_redundancy if scope is not None else base.minimum_redundancy
        for record in newest_completed(rows, floor):
            found[record.id] = f"{FLOOR} {floor}"
    for record in newest_completed(history, base.minimum_redundancy):
        found[record.id] = f"{FLOOR} {base.minimum_redundancy} of the database"
    return found


def decide_database(
    history: Sequence[Retained],
    policy: RetentionSettings | None,
    schedule_policies: Mapping[str, RetentionSettings] | None = None,
    now: datetime | None = None,
    *,
    gfs: bool = True,
) -> list[Decision]:
    """Decide for every row of one database, each schedule's backups under its own policy.

    Rows labelled ``schedule=S`` with ``S`` in ``schedule_policies`` form the scope of that
    policy; every other row falls under ``policy`` (None: keep every completed row, still
    clean failed ones after 7 days). The database policy's ``minimum_redundancy`` newest
    completed rows of the whole database are kept whatever their scope decided.

    Args:
        history: all rows of one database (any order).
        policy: the database's policy.
        schedule_policies: ``{schedule name: policy}`` for schedules with their own.
        now: the current time (aware); required.
        gfs: as for :func:`decide`.

    Returns:
        One :class:`Decision` per non-deleted row, newest first.

    Raises:
        ValueError: ``now`` is missing.
        ConfigError: a policy's time zone is unknown.
    """
    if now is None:
        raise ValueError("now is required")
    own = dict(schedule_policies or {})
    decisions: list[Decision] = []
    for scope, rows in scopes(history, own).items():
        chosen = own[scope] if scope is not None else (policy or RetentionSettings())
        decisions += decide(rows, chosen, now, gfs=gfs)
    floor = protected(history, policy, own)
    by_id = {r.id: r for r in history}
    final = []
    for decision in decisions:
        reason = floor.get(decision.backup_id)
        if reason is not None and not decision.keep:
            decision = Decision(decision.backup_id, True, (reason,))
        elif reason is not None and not any(r.startswith(FLOOR) for r in decision.reasons):
            decision = Decision(decision.backup_id, True, (*decision.reasons, reason))
        final.append(decision)
    return sorted(final, key=lambda d: (by_id[d.backup_id].started_at, d.backup_id), reverse=True)


def horizon(
    policy: RetentionSettings | None,
    schedule_policies: Mapping[str, RetentionSettings],
    now: datetime,
) -> datetime | None:
    """The moment (UTC) after which every completed, unpinned, non-``pre-restore`` backup of
    the database is kept by its policy's ``max_age_days`` whatever else the rules say, when
    retention may read only the newest of those (:func:`covers` says how many): the
    database's policy has ``max_age_days``, no schedule has a policy of its own and no
    storage target a table of its own. None: every live row must be decided.
    """
    if policy is None or policy.max_age_days is None or schedule_policies or policy.targets:
        return None
    return (now - timedelta(days=policy.max_age_days)).astimezone(UTC)


def counted(policy: RetentionSettings) -> int:
    """How many of the newest young rows (see :func:`horizon`) the counting rules
    ``minimum_redundancy`` and ``keep_last`` can keep: ``max(1, both)``."""
    return max(1, policy.minimum_redundancy, policy.keep_last or 0)


def covers(policy: RetentionSettings, newest: Sequence[datetime]) -> bool:
    """Whether the start times ``newest`` of the newest young rows (see :func:`horizon`;
    newest first) show that the rules of ``policy`` keep no row older than them but by
    ``max_age_days``: at least :func:`counted` of them, and for each GFS rule ``keep_X N``,
    N different periods among them (the newest row of a period that has a young row is
    young, so every period a GFS rule keeps holds only young rows then).

    Then only the :func:`counted` newest young rows need deciding: the older young rows are
    kept by ``max_age_days``, and no GFS rule reaches past the young rows, so the GFS rules
    are left out of the decisions (``gfs=False`` of :func:`decide`).
    """
    if len(newest) < counted(policy):
        return False
    tz = zone(policy.timezone)
    for name, period in PERIODS.items():
        count = getattr(policy, f"keep_{name}")
        if count is not None and len({period(t.astimezone(tz)) for t in newest}) < count:
            return False
    return True


def hold_reason(
    history: Sequence[Retained], policies: Iterable[RetentionSettings], now: datetime
) -> str | None:
    """Why retention must delete nothing for this database now, or None.

    Held while the newest backup attempt that ended (completed, failed or interrupted)
    did not complete, or while no completed backup started within the shortest period of
    ``policies`` (:meth:`~pgvault.config.operations.RetentionSettings.shortest_period_days`,
    times :data:`HOLD_GRACE`): the rules would otherwise go on deleting while backups fail.

    Args:
        history: the database's rows (any order).
        policies: the policies in force (the database's and its schedules').
        now: the current time (aware).
    """
    rows = _newest_first(history)
    ended = [r for r in rows if r.status in ("completed", "failed", "interrupted")]
    if ended and ended[0].status != "completed":
        newest = ended[0]
        return (
            f"the newest backup attempt {newest.id} "
            f"({newest.started_at.astimezone(UTC):%Y-%m-%d %H:%M} UTC) {newest.status}"
        )
    periods = [p for policy in policies if (p := policy.shortest_period_days()) is not None]
    if not periods:
        return None
    period = min(periods)
    completed = [r for r in ended if r.status == "completed"]
    if not completed or completed[0].started_at <= now - timedelta(days=period * HOLD_GRACE):
        return f"no completed backup in the last {period:g} days (the policy's shortest period)"
    return None


def with_keep_last(keep_last: int, base: RetentionSettings | None = None) -> RetentionSettings:
    """An ad-hoc policy "keep the last N" (the API's ``keep_last`` parameter), keeping the
    ``minimum_redundancy`` and failed-row cleanup of ``base`` (the configured policy)."""
    base = base or RetentionSettings()
    return RetentionSettings(
        keep_last=keep_last,
        minimum_redundancy=base.minimum_redundancy,
        failed_max_age_days=base.failed_max_age_days,
    )
