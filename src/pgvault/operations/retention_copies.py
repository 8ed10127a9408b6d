"""Retention per stored copy: the whole plan for one database (pure: no I/O, no clock).

:func:`plan` starts from :func:`~pgvault.operations.retention.decide_database` (one
decision per backup row) and decides each completed backup's copies:

* a copy on a target whose policy has a table of its own
  (``[databases.app.retention.offsite]``) follows that table
  (:meth:`~pgvault.config.operations.RetentionSettings.for_target`), every other copy the
  backup's decision; deleting one copy never touches the others, and the row is deleted
  only with its last copy;
* a backup kept by ``minimum_redundancy`` keeps at least one copy (its first, the primary);
* a copy under S3 Object Lock (retain-until in the future, or a legal hold) is kept and
  says until when, so no delete is tried and no error is reported;
* while :func:`~pgvault.operations.retention.hold_reason` holds, nothing is deleted unless
  the plan is forced (``pgvault prune --force``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from pgvault.catalog.records import BackupRecord
from pgvault.catalog.retention import RetentionHistory, live_targets
from pgvault.config.operations import RetentionSettings
from pgvault.operations import retention
from pgvault.operations.retention import CopyDecision, Decision

LEGAL_HOLD = datetime.max.replace(tzinfo=UTC)
"""The retain-until date :func:`plan` is given for a copy under an S3 legal hold."""

Locks = Mapping[tuple[str, str], datetime]
"""``{(backup id, target): retain-until (UTC)}`` of copies under Object Lock."""


@dataclass(frozen=True)
class Plan:
    """What retention does to one database.

    Attributes:
        database: the database's name.
        decisions: one per non-deleted row, newest first; completed ones carry their copies.
        minimum_redundancy: the database's floor (its N newest completed are kept).
        protected: ``{backup id: reason}`` of the rows the floors keep.
        hold: why nothing is deleted (see :func:`~pgvault.operations.retention.hold_reason`),
            else None.
        forced: the hold is overridden (deletions go ahead).
        unlisted: young completed backups the policy's ``max_age_days`` keeps that were not
            read, so have no decision here (:func:`pgvault.catalog.retention.history`).
    """

    database: str
    decisions: list[Decision]
    minimum_redundancy: int
    protected: dict[str, str]
    hold: str | None = None
    forced: bool = False
    unlisted: int = 0

    @property
    def held(self) -> bool:
        """True when the hold stops every deletion."""
        return self.hold is not None and not self.forced

    def deletions(self) -> list[tuple[str, str]]:
        """``(backup id, target)`` of every copy to be deleted."""
        return [(d.backup_id, c.target) for d in self.decisions for c in d.copies if not c.keep]


def plan(
    database: str,
    history: RetentionHistory,
    policy: RetentionSettings | None,
    schedule_policies: Mapping[str, RetentionSettings],
    now: datetime,
    *,
    keep_last: int | None = None,
    locks: Locks | None = None,
    force: bool = False,
) -> Plan:
    """Decide every row and every copy of one database.

    Args:
        database: its name.
        history: its live rows and their copies (:func:`pgvault.catalog.retention.history`).
        policy: the database's policy (None: the defaults, which delete no completed backup).
        schedule_policies: ``{schedule name: policy}`` of schedules with their own.
        now: the current time (aware).
        keep_last: ad hoc "keep the last N" replacing the configured rules (the floor and
            the hold stay).
        locks: retain-until dates of copies under Object Lock (read by the caller).
        force: override the hold (never the floor, nor a lock).

    Raises:
        ConfigError: a policy's time zone is unknown.
    """
    base = policy or RetentionSettings()
    own = dict(schedule_policies)
    if keep_last is not None:
        base, own = retention.with_keep_last(keep_last, base), {}
    rows = [r for r in history.backups if r.status != "deleted"]
    floor = retention.protected(rows, base, own)
    live = {
        r.id: live_targets(r, history.copies.get(r.id, [])) for r in rows if r.status == "completed"
    }
    per_copy = _target_decisions(rows, live, base, own, now)
    hold = retention.hold_reason(rows, [base, *own.values()], now)
    # rows left unlisted are young ones kept by max_age, beyond every GFS rule's reach
    decided = retention.decide_database(rows, base, own, now, gfs=not history.unlisted)
    decisions = []
    for decision in decided:
        if decision.backup_id in live:
            copies = [
                per_copy.get((decision.backup_id, t))
                or CopyDecision(t, decision.keep, decision.reasons)
                for t in live[decision.backup_id]
            ]
            copies = _keep_one(copies, floor.get(decision.backup_id))
            copies = [_unless_locked(decision.backup_id, c, locks or {}, now) for c in copies]
            decision = _from_copies(decision, copies)
        if hold is not None and not force:
            decision = _held(decision, hold)
        decisions.append(decision)
    forced = hold is not None and force
    return Plan(database, decisions, base.minimum_redundancy, floor, hold, forced, history.unlisted)


def _target_decisions(
    rows: Sequence[BackupRecord],
    live: Mapping[str, list[str]],
    base: RetentionSettings,
    own: Mapping[str, RetentionSettings],
    now: datetime,
) -> dict[tuple[str, str], CopyDecision]:
    """Decisions of the copies on targets with a policy table of their own."""
    found: dict[tuple[str, str], CopyDecision] = {}
    for scope, members in retention.scopes(rows, own).items():
        chosen = own[scope] if scope is not None else base
        for target in chosen.targets:
            there = [r for r in members if target in live.get(r.id, ())]
            floor = chosen.target_floor(target)
            for d in retention.decide(there, chosen.for_target(target), now, floor=floor):
                found[(d.backup_id, target)] = CopyDecision(target, d.keep, d.reasons)
    return found


def _keep_one(copies: list[CopyDecision], floor_reason: str | None) -> list[CopyDecision]:
    """A backup a floor protects keeps its first copy when every copy would go."""
    if floor_reason is None or any(c.keep for c in copies) or not copies:
        return copies
    first = copies[0]
    return [CopyDecision(first.target, True, (f"{floor_reason} (its last copy)",)), *copies[1:]]


def _unless_locked(backup_id: str, copy: CopyDecision, locks: Locks, now: datetime) -> CopyDecision:
    until = locks.get((backup_id, copy.target))
    if copy.keep or until is None or until <= now:
        return copy
    when = "legal hold" if until == LEGAL_HOLD else f"until {until:%Y-%m-%d %H:%M} UTC"
    return CopyDecision(copy.target, True, (f"object lock {when}", *copy.reasons))


def _from_copies(decision: Decision, copies: list[CopyDecision]) -> Decision:
    """The row's decision from its copies': kept while any copy is kept."""
    keep = any(c.keep for c in copies)
    if len({(c.keep, c.reasons) for c in copies}) == 1:
        reasons = copies[0].reasons
    else:
        reasons = tuple(f"{c.target}: {'; '.join(c.reasons)}" for c in copies)
    return Decision(decision.backup_id, keep, reasons, tuple(copies))


def _held(decision: Decision, hold: str) -> Decision:
    """Nothing of ``decision`` is deleted while retention is held."""
    if decision.keep and all(c.keep for c in decision.copies):
        return decision
    note = f"retention held: {hold}"
    copies = tuple(
        c if c.keep else CopyDecision(c.target, True, (note, *c.reasons)) for c in decision.copies
    )
    return replace(decision, keep=True, reasons=(note, *decision.reasons), copies=copies)
