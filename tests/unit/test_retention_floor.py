"""Retention can never empty a database's history (issue 16), as pure decisions:
``minimum_redundancy`` under any sequence of backups, failures and prune runs; the hold while
backups fail; per-target policies; Object Lock dates; the settings that carry them."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pgvault import storage
from pgvault.catalog.records import BackupCopy, BackupRecord
from pgvault.catalog.retention import RetentionHistory, live_targets
from pgvault.config.operations import RetentionSettings
from pgvault.config.settings import load_settings
from pgvault.errors import ConfigError
from pgvault.operations import retention, retention_copies

START = datetime(2026, 1, 1, 2, 0, tzinfo=UTC)


@dataclass
class World:
    """One database's catalog in memory, changed the way prune changes the real one."""

    rows: list[BackupRecord] = field(default_factory=list)
    copies: dict[str, list[BackupCopy]] = field(default_factory=dict)
    made: list[BackupRecord] = field(default_factory=list)  # every backup that completed

    def backup(self, at: datetime, ok: bool, offsite: bool = True, schedule: str = "") -> None:
        index = len(self.rows)
        record = BackupRecord(
            id=f"b{index:04d}",
            database="app",
            dbname="app",
            server="db:5432",
            storage="local",
            storage_key=f"app/{index}.dump",
            status="completed" if ok else "failed",
            trigger="scheduled",
            labels={"schedule": schedule} if schedule else {},
            started_at=at,
        )
        self.rows.append(record)
        if ok:
            self.made.append(record)
            if offsite:
                self.copies[record.id] = [_copy(record, "offsite", "completed")]

    def history(self) -> RetentionHistory:
        live = [r for r in self.rows if r.status != "deleted"]
        return RetentionHistory(live, {r.id: list(self.copies.get(r.id, [])) for r in live})

    def apply(self, plan: retention_copies.Plan) -> None:
        """Carry ``plan`` out as :func:`pgvault.operations.prune.apply` does."""
        by_id = {r.id: r for r in self.rows}
        for decision in plan.decisions:
            record = by_id[decision.backup_id]
            if not decision.copies:
                if not decision.keep:
                    record.status = "deleted"
                continue
            drops = [c.target for c in decision.copies if not c.keep]
            drops.sort(key=lambda t: t == record.storage)  # the primary last, as prune does
            for target in drops:
                self.drop(record, target)

    def drop(self, record: BackupRecord, target: str) -> None:
        """:func:`pgvault.backups.copies.delete_copy` without the storage."""
        rows = self.copies.setdefault(record.id, [])
        remaining = [t for t in live_targets(record, rows) if t != target]
        if target == record.storage and remaining:
            _upsert(rows, _copy(record, record.storage, "completed"))
            record.storage = remaining[0]
        if remaining:
            _upsert(rows, _copy(record, target, "deleted"))
        else:
            record.status = "deleted"

    def completed(self) -> list[BackupRecord]:
        return [r for r in self.rows if r.status == "completed"]


def _copy(record: BackupRecord, target: str, status: str) -> BackupCopy:
    return BackupCopy.model_validate(
        {
            "backup_id": record.id,
            "storage": target,
            "storage_key": record.storage_key,
            "status": status,
        }
    )


def _upsert(rows: list[BackupCopy], copy: BackupCopy) -> None:
    rows[:] = [r for r in rows if r.storage != copy.storage] + [copy]


def _plan(
    world: World,
    policy: RetentionSettings,
    now: datetime,
    *,
    own: dict[str, RetentionSettings] | None = None,
    force: bool = False,
    locks: retention_copies.Locks | None = None,
) -> retention_copies.Plan:
    return retention_copies.plan(
        "app", world.history(), policy, own or {}, now, force=force, locks=locks
    )


# --- the floor under any sequence -------------------------------------------------------

rules = st.fixed_dictionaries(
    {},
    optional={
        "keep_last": st.integers(1, 6),
        "max_age_days": st.floats(0.5, 20),
        "keep_daily": st.integers(1, 6),
        "keep_weekly": st.integers(1, 3),
    },
)
target_rules = rules.filter(bool) | st.just({"keep_last": 1})
policies = st.builds(
    lambda base, floor, local, offsite: RetentionSettings(
        **base,
        minimum_redundancy=floor,
        **({"local": local} if local is not None else {}),
        **({"offsite": offsite} if offsite is not None else {}),
    ),
    rules,
    st.integers(1, 5),
    st.none() | target_rules,
    st.none() | target_rules | target_rules.map(lambda r: {**r, "minimum_redundancy": 1}),
)
steps = st.lists(
    st.tuples(
        st.sampled_from(["ok", "ok", "ok", "ok-local-only", "failed", "prune", "force", "force"]),
        st.integers(1, 72),  # hours until the next step
        st.sampled_from(["", "", "daily"]),
    ),
    min_size=5,
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(policies, st.none() | policies, steps)
def test_no_sequence_of_backups_failures_and_prunes_goes_below_minimum_redundancy(
    policy: RetentionSettings,
    daily: RetentionSettings | None,
    sequence: list[tuple[str, int, str]],
) -> None:
    world = World()
    own = {"daily": daily} if daily is not None else {}
    now = START
    for action, hours, schedule in sequence:
        if action in ("ok", "ok-local-only", "failed"):
            world.backup(now, action != "failed", action == "ok", schedule)
        else:
            before = [(r.id, r.status) for r in world.rows]
            plan = _plan(world, policy, now, own=own, force=action == "force")
            world.apply(plan)
            if plan.held:
                assert [(r.id, r.status) for r in world.rows] == before, "a hold deletes nothing"
        now += timedelta(hours=hours)
        completed = world.completed()
        assert len(completed) >= min(policy.minimum_redundancy, len(world.made))
        newest_made = sorted(world.made, key=lambda r: (r.started_at, r.id), reverse=True)
        for record in newest_made[: policy.minimum_redundancy]:
            assert record.status == "completed", "the newest completed backups are kept"
        for record in completed:
            assert live_targets(record, world.copies.get(record.id, [])), "a copy remains"


# --- the scenario: 31 days of failures under max_age_days = 30 --------------------


def _failing_month(world: World) -> datetime:
    """Ten daily backups that completed, then 31 days of daily failures; returns 'now'."""
    for day in range(10):
        world.backup(START + timedelta(days=day), True, offsite=False)
    for day in range(10, 41):
        world.backup(START + timedelta(days=day), False)
    return START + timedelta(days=41)


def test_31_days_of_failures_under_max_age_30_delete_nothing_and_say_why() -> None:
    world = World()
    now = _failing_month(world)
    policy = RetentionSettings(max_age_days=30)

    plan = _plan(world, policy, now)
    world.apply(plan)

    assert plan.held and plan.hold is not None and "b0040" in plan.hold and "failed" in plan.hold
    assert len(world.completed()) == 10
    assert all(d.keep for d in plan.decisions)
    old = next(d for d in plan.decisions if d.backup_id == "b0000")
    assert old.reasons[0].startswith("retention held: the newest backup attempt b0040")
    assert old.reasons[1] == "no rule keeps it (max_age 30 d)"


def test_31_days_of_failures_forced_keep_the_3_newest() -> None:
    world = World()
    now = _failing_month(world)

    plan = _plan(world, RetentionSettings(max_age_days=30), now, force=True)
    world.apply(plan)

    assert plan.forced and not plan.held
    assert [r.id for r in world.completed()] == ["b0007", "b0008", "b0009"]
    assert set(plan.protected) == {"b0007", "b0008", "b0009"}
    kept = {d.backup_id: d.reasons for d in plan.decisions if d.keep and d.copies}
    assert kept == {
        "b0009": ("minimum_redundancy 3",),
        "b0008": ("minimum_redundancy 3",),
        "b0007": ("minimum_redundancy 3",),
    }


def test_the_ad_hoc_keep_last_keeps_the_floor_too() -> None:
    world = World()
    for day in range(6):
        world.backup(START + timedelta(days=day), True)

    plan = retention_copies.plan(
        "app", world.history(), RetentionSettings(minimum_redundancy=4), {}, START, keep_last=1
    )

    assert [d.keep for d in plan.decisions] == [True, True, True, True, False, False]
    assert plan.decisions[3].reasons == ("minimum_redundancy 4",)


# --- the hold ----------------------------------------------------------------------------


def test_hold_while_no_completed_backup_within_the_shortest_period() -> None:
    world = World()
    world.backup(START, True)
    daily = RetentionSettings(keep_daily=7, max_age_days=30)

    assert retention.hold_reason(world.rows, [daily], START + timedelta(hours=26)) is None
    late = retention.hold_reason(world.rows, [daily], START + timedelta(hours=27))
    assert late == "no completed backup in the last 1 days (the policy's shortest period)"
    count_only = RetentionSettings(keep_last=3)
    assert retention.hold_reason(world.rows, [count_only], START + timedelta(days=400)) is None


def test_an_interrupted_or_failed_newest_attempt_holds_a_running_one_does_not() -> None:
    world = World()
    world.backup(START, True)
    world.backup(START + timedelta(hours=1), False)
    world.rows[-1].status = "interrupted"
    assert "interrupted" in (retention.hold_reason(world.rows, [], START) or "")
    world.backup(START + timedelta(hours=2), True)
    world.backup(START + timedelta(hours=3), False)
    world.rows[-1].status = "running"
    assert retention.hold_reason(world.rows, [], START + timedelta(hours=3)) is None


# --- per storage target ------------------------------------------------------------------


def test_per_target_policies_keep_2_local_and_10_offsite() -> None:
    world = World()
    for hour in range(12):
        world.backup(START + timedelta(hours=hour), True)
    policy = RetentionSettings(keep_last=10, local=RetentionSettings(keep_last=2))
    now = START + timedelta(hours=12)

    plan = _plan(world, policy, now)
    world.apply(plan)

    on = {
        target: [r.id for r in world.completed() if target in live_targets(r, world.copies[r.id])]
        for target in ("local", "offsite")
    }
    assert on["local"] == ["b0010", "b0011"]
    assert on["offsite"] == [f"b{i:04d}" for i in range(2, 12)]
    assert [r.status for r in world.rows[:2]] == ["deleted", "deleted"]
    third = world.rows[9]  # kept by minimum_redundancy on offsite only: still completed
    assert third.status == "completed" and third.storage == "offsite"
    decision = next(d for d in plan.decisions if d.backup_id == "b0009")
    assert [(c.target, c.keep) for c in decision.copies] == [("local", False), ("offsite", True)]
    assert decision.reasons[0].startswith("local: no rule keeps it (keep_last 2)")


def test_a_floor_backup_keeps_one_copy_when_every_target_would_drop_it() -> None:
    world = World()
    for hour in range(4):
        world.backup(START + timedelta(hours=hour), True)
    policy = RetentionSettings(
        keep_last=1,
        minimum_redundancy=3,
        local=RetentionSettings(keep_last=1),
        offsite=RetentionSettings(keep_last=1),
    )

    plan = _plan(world, policy, START + timedelta(hours=4))
    world.apply(plan)

    assert [r.id for r in world.completed()] == ["b0001", "b0002", "b0003"]
    second = next(d for d in plan.decisions if d.backup_id == "b0002")
    assert second.copies[0].reasons == ("minimum_redundancy 3 of the database (its last copy)",)
    assert not second.copies[1].keep


# --- Object Lock ---------------------------------------------------------------------------


def test_locked_copies_are_kept_and_say_until_when() -> None:
    world = World()
    for hour in range(5):
        world.backup(START + timedelta(hours=hour), True)
    now = START + timedelta(hours=5)
    locks = {
        ("b0000", "offsite"): now + timedelta(days=2),
        ("b0001", "offsite"): now - timedelta(seconds=1),  # expired: deletable
        ("b0000", "local"): retention_copies.LEGAL_HOLD,
    }

    plan = _plan(world, RetentionSettings(keep_last=1), now, locks=locks)

    first = next(d for d in plan.decisions if d.backup_id == "b0000")
    assert first.keep
    assert first.copies[0].reasons[0] == "object lock legal hold"
    assert (
        first.copies[1].reasons[0]
        == f"object lock until {now + timedelta(days=2):%Y-%m-%d %H:%M} UTC"
    )
    second = next(d for d in plan.decisions if d.backup_id == "b0001")
    assert not second.keep
    assert plan.deletions() == [("b0001", "local"), ("b0001", "offsite")]


# --- settings ------------------------------------------------------------------------------


def test_per_target_tables_in_the_config_file(tmp_path: Path) -> None:
    config = tmp_path / "pgvault.toml"
    config.write_text(
        """
[storage_targets.local]
url = "/var/backups/pgvault"
[storage_targets.offsite]
url = "s3://acme/pgvault"
object_lock = true
[databases.app]
url = "postgresql://backup@db/app"
storage = ["local", "offsite"]
[databases.app.retention]
keep_last = 10
max_age_days = 30
minimum_redundancy = 4
[databases.app.retention.local]
keep_last = 2
[databases.app.retention.offsite]
keep_daily = 14
minimum_redundancy = 5
"""
    )
    loaded = load_settings(config, home=tmp_path)
    policy = loaded.databases["app"].retention
    assert policy is not None and set(policy.targets) == {"local", "offsite"}
    local = policy.for_target("local")
    assert (local.keep_last, local.max_age_days, local.minimum_redundancy) == (2, None, 4)
    assert policy.target_floor("local") == 0 and policy.target_floor("offsite") == 5
    assert policy.for_target("elsewhere") is policy
    assert policy.lock_days() == 30 and policy.for_target("offsite").lock_days() == 14
    offsite = storage.resolve(loaded, "offsite", database="app")
    assert getattr(offsite, "lock_days", None) == 14  # from the offsite policy: keep_daily 14
    assert getattr(storage.resolve(loaded, "offsite"), "lock_days", None) is None


def test_a_table_naming_no_target_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(
            home=tmp_path,
            databases={"app": {"storage": ["local"], "retention": {"locl": {"keep_last": 1}}}},
        )
    assert str(caught.value) == (
        "invalid setting settings: databases.app.retention.locl names no storage target of app "
        "(known: local) (in the environment)"
    )
    with pytest.raises(ConfigError, match="minimum_redundancy"):
        load_settings(home=tmp_path, databases={"app": {"retention": {"minimum_redundancy": 0}}})
