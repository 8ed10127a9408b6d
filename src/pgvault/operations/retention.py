"""Retention decisions: pure functions over catalog rows (no I/O, no clock).

:func:`decide` answers, for one scope (a database's backups, or one schedule's), which rows
to keep and why; :func:`decide_database` splits a database's history into its scopes and
adds the database-wide safety rules. :mod:`pgvault.operations.prune` applies the answer.

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
* the newest completed backup of a database is never deleted (so a deletion always has a
  completed successor);
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


@dataclass(frozen=True)
class Decision:
    """What happens to one backup row.

    Attributes:
        backup_id: the row's id.
        keep: False when the row is to be deleted.
        reasons: why, e.g. ``("keep_last 3",)``, ``("daily 2024-05-01",)``,
            ``("no rule keeps it: keep_last 3, daily 7",)``, ``("failed, older than 7 days",)``.
    """

    backup_id: str
    keep: bool
    reasons: tuple[str, ...]


def has_rules(policy: RetentionSettings) -> bool:
    """Whether ``policy`` sets any rule that keeps completed backups."""
    return any(
        value is not None
        for value in (
            policy.keep_last,
            policy.max_age_days,
            policy.keep_daily,
            policy.keep_weekly,
            policy.keep_monthly,
            policy.keep_yearly,
        )
    )


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


def decide(history: Sequence[Retained], policy: RetentionSettings, now: datetime) -> list[Decision]:
    """Decide the fate of every row of one scope under ``policy``.

    Args:
        history: the scope's rows (any order; ``deleted`` ones are skipped).
        policy: the rules (see the module docstring).
        now: the current time (aware; UTC or any zone).

    Returns:
        One :class:`Decision` per non-deleted row, newest first. This function does not
        protect the database's newest completed backup across scopes: use
        :func:`decide_database` for that.

    Raises:
        ConfigError: the policy's time zone is unknown.
    """
    tz = zone(policy.timezone)
    rows = _newest_first(r for r in history if r.status != "deleted")
    reasons: dict[str, list[str]] = {r.id: [] for r in rows}
    exempt = {r.id: e for r in rows if (e := _exemption(r, policy)) is not None}
    completed = [r for r in rows if r.status == "completed"]
    pool = [r for r in completed if r.id not in exempt]
    if completed:
        reasons[completed[0].id].append("newest completed")
    if policy.keep_last is not None:
        for record in pool[: policy.keep_last]:
            reasons[record.id].append(f"keep_last {policy.keep_last}")
    if policy.max_age_days is not None:
        cutoff = now - timedelta(days=policy.max_age_days)
        for record in pool:
            if record.started_at > cutoff:
                reasons[record.id].append(f"max_age {policy.max_age_days:g} d")
    for name, period in PERIODS.items():
        count = getattr(policy, f"keep_{name}")
        if count is not None:
            for backup_id, label in gfs_keep(pool, period, count, tz).items():
                reasons[backup_id].append(f"{name} {label}")
    decisions = []
    for record in rows:
        why = reasons[record.id]
        if record.id in exempt:
            why.insert(0, exempt[record.id])
        if record.status == "running":
            why.append("running")
        elif record.status in ("failed", "interrupted"):
            limit = policy.failed_max_age_days
            if limit is None:
                why.append(f"{record.status}, failed_max_age_days unset")
            elif record.started_at > now - timedelta(days=limit):
                why.append(f"{record.status}, younger than {limit:g} days")
            else:
                decisions.append(
                    Decision(record.id, False, (f"{record.status}, older than {limit:g} days",))
                )
                continue
        elif not why and not has_rules(policy):
            why.append("no retention policy")
        if why:
            decisions.append(Decision(record.id, True, tuple(why)))
        else:
            decisions.append(
                Decision(record.id, False, (f"no rule keeps it ({describe(policy)})",))
            )
    return decisions


def decide_database(
    history: Sequence[Retained],
    policy: RetentionSettings | None,
    schedule_policies: Mapping[str, RetentionSettings] | None = None,
    now: datetime | None = None,
) -> list[Decision]:
    """Decide for every row of one database, each schedule's backups under its own policy.

    Rows labelled ``schedule=S`` with ``S`` in ``schedule_policies`` form the scope of that
    policy; every other row falls under ``policy`` (None: keep every completed row, still
    clean failed ones after 7 days). The newest completed row of the whole database is kept
    whatever its scope decided.

    Args:
        history: all rows of one database (any order).
        policy: the database's policy.
        schedule_policies: ``{schedule name: policy}`` for schedules with their own.
        now: the current time (aware); required.

    Returns:
        One :class:`Decision` per non-deleted row, newest first.
    """
    if now is None:
        raise ValueError("now is required")
    own = dict(schedule_policies or {})
    scopes: dict[str | None, list[Retained]] = {}
    for record in history:
        label = record.labels.get(SCHEDULE_LABEL)
        scopes.setdefault(label if label in own else None, []).append(record)
    decisions: list[Decision] = []
    for scope, rows in scopes.items():
        chosen = own[scope] if scope is not None else (policy or RetentionSettings())
        decisions += decide(rows, chosen, now)
    completed = _newest_first(r for r in history if r.status == "completed")
    newest = completed[0].id if completed else None
    by_id = {r.id: r for r in history}
    final = []
    for decision in decisions:
        if decision.backup_id == newest and not decision.keep:
            decision = Decision(newest, True, ("newest completed of the database",))
        final.append(decision)
    return sorted(final, key=lambda d: (by_id[d.backup_id].started_at, d.backup_id), reverse=True)


def with_keep_last(keep_last: int) -> RetentionSettings:
    """An ad-hoc policy "keep the last N" (the API's ``keep_last`` parameter)."""
    return RetentionSettings(keep_last=keep_last)
