"""Retention as properties: for random histories and policies, the safety rules always hold
(the ``minimum_redundancy`` newest completed backups stay), GFS keeps exactly one backup per
period for the configured number of periods, and ``keep_last`` + ``max_age`` combine as a
union (README, retention)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from pgvault.catalog.records import BackupRecord
from pgvault.config.operations import RetentionSettings
from pgvault.operations import retention

NOW = datetime(2026, 3, 29, 12, 0, tzinfo=UTC)
SPAN = timedelta(days=3 * 365)


@st.composite
def records(draw: st.DrawFn, *, only_plain: bool = False) -> list[BackupRecord]:
    """A history of one database, 0..60 rows over the three years before NOW."""
    count = draw(st.integers(0, 60))
    rows = []
    for i in range(count):
        offset = draw(st.integers(0, int(SPAN.total_seconds())))
        status = draw(
            st.sampled_from(["completed"] * 6 + ["failed", "interrupted", "running", "deleted"])
        )
        trigger = (
            "scheduled"
            if only_plain
            else draw(st.sampled_from(["scheduled", "scheduled", "manual", "pre-restore"]))
        )
        pinned = not only_plain and i % 5 == 0 and draw(st.booleans())
        schedule = draw(st.sampled_from(["daily", "weekly", None]))
        rows.append(
            BackupRecord(
                id=f"b{i:03d}",
                database="app",
                dbname="app",
                server="db:5432",
                storage="local",
                storage_key=f"app/{i}.dump",
                status=status,
                trigger=trigger,
                pinned=pinned,
                labels={"schedule": schedule} if schedule else {},
                started_at=NOW - timedelta(seconds=offset),
            )
        )
    return rows


counts = st.none() | st.integers(1, 12)
policies = st.builds(
    RetentionSettings,
    keep_last=counts,
    max_age_days=st.none() | st.floats(0.5, 400),
    keep_daily=counts,
    keep_weekly=counts,
    keep_monthly=counts,
    keep_yearly=counts,
    minimum_redundancy=st.integers(1, 5),
    failed_max_age_days=st.none() | st.floats(0.5, 30),
    include_pinned=st.booleans(),
    include_pre_restore=st.booleans(),
    timezone=st.sampled_from([None, "Asia/Kolkata", "America/New_York", "Europe/Berlin"]),
)


def _by_id(decisions: list[retention.Decision]) -> dict[str, retention.Decision]:
    return {d.backup_id: d for d in decisions}


def _newest_completed(rows: list[BackupRecord]) -> BackupRecord | None:
    done = _completed_newest_first(rows)
    return done[0] if done else None


def _completed_newest_first(rows: list[BackupRecord]) -> list[BackupRecord]:
    done = [r for r in rows if r.status == "completed"]
    return sorted(done, key=lambda r: (r.started_at, r.id), reverse=True)


@settings(max_examples=300, deadline=None)
@given(records(), policies, st.dictionaries(st.sampled_from(["daily", "weekly"]), policies))
def test_safety_rules_hold_for_any_history_and_policy(
    rows: list[BackupRecord],
    policy: RetentionSettings,
    own: dict[str, RetentionSettings],
) -> None:
    decisions = _by_id(retention.decide_database(rows, policy, own, NOW))

    assert set(decisions) == {r.id for r in rows if r.status != "deleted"}
    completed = _completed_newest_first(rows)
    floor = policy.minimum_redundancy
    for row in completed[:floor]:
        assert decisions[row.id].keep, "the minimum_redundancy newest completed must stay"
    for schedule, scoped in own.items():
        in_scope = [r for r in completed if r.labels.get("schedule") == schedule]
        for row in in_scope[: scoped.minimum_redundancy]:
            assert decisions[row.id].keep, "each scope keeps its own floor"
    for row in rows:
        if row.status == "deleted":
            continue
        decision = decisions[row.id]
        assert decision.reasons, "every decision says why"
        if row.status == "running":
            assert decision.keep
        scope = own.get(row.labels.get("schedule", ""), policy)
        if row.pinned and not scope.include_pinned and row.status == "completed":
            assert decision.keep
        if row.trigger == "pre-restore" and not scope.include_pre_restore:
            if row.status == "completed":
                assert decision.keep
        if row.status == "completed" and not decision.keep:
            # never delete before minimum_redundancy successors completed
            newer = [r for r in completed if (r.started_at, r.id) > (row.started_at, row.id)]
            assert len(newer) >= floor
        if row.status in ("failed", "interrupted"):
            limit = scope.failed_max_age_days
            old = limit is not None and row.started_at <= NOW - timedelta(days=limit)
            assert decision.keep is not old


@settings(max_examples=200, deadline=None)
@given(records(), st.sampled_from(list(retention.PERIODS)), st.integers(1, 10), st.booleans())
def test_gfs_keeps_exactly_one_per_period_for_n_periods(
    rows: list[BackupRecord], period_name: str, count: int, kolkata: bool
) -> None:
    tz = ZoneInfo("Asia/Kolkata") if kolkata else UTC
    policy = RetentionSettings(
        **{f"keep_{period_name}": count},  # type: ignore[arg-type]
        minimum_redundancy=1,
        include_pinned=True,
        include_pre_restore=True,
        timezone="Asia/Kolkata" if kolkata else None,
    )
    period = retention.PERIODS[period_name]

    decisions = _by_id(retention.decide(rows, policy, NOW))

    completed = [r for r in rows if r.status == "completed"]
    by_period: dict[tuple[int, ...], list[BackupRecord]] = {}
    for row in completed:
        by_period.setdefault(period(row.started_at.astimezone(tz)), []).append(row)
    recent = sorted(by_period, reverse=True)[:count]
    expected = {max(by_period[key], key=lambda r: (r.started_at, r.id)).id for key in recent}
    kept_by_rule = {
        r.id
        for r in completed
        if any(reason.startswith(f"{period_name} ") for reason in decisions[r.id].reasons)
    }
    assert kept_by_rule == expected
    assert len(kept_by_rule) == min(count, len(by_period))
    newest = _newest_completed(rows)
    kept = {r.id for r in completed if decisions[r.id].keep}
    assert kept == expected | ({newest.id} if newest else set())


@settings(max_examples=200, deadline=None)
@given(
    records(only_plain=True),
    st.none() | st.integers(1, 15),
    st.none() | st.floats(1, 800),
    st.integers(1, 4),
)
def test_keep_last_and_max_age_combine_as_a_union(
    rows: list[BackupRecord], keep_last: int | None, max_age: float | None, floor: int
) -> None:
    policy = RetentionSettings(keep_last=keep_last, max_age_days=max_age, minimum_redundancy=floor)

    decisions = _by_id(retention.decide_database(rows, policy, {}, NOW))

    completed = sorted(
        (r for r in rows if r.status == "completed"),
        key=lambda r: (r.started_at, r.id),
        reverse=True,
    )
    for index, row in enumerate(completed):
        in_last = keep_last is not None and index < keep_last
        young = max_age is not None and row.started_at > NOW - timedelta(days=max_age)
        no_rules = keep_last is None and max_age is None
        expected = in_last or young or index < floor or no_rules
        assert decisions[row.id].keep is expected, (index, decisions[row.id])


def test_deletion_reasons_name_the_rules() -> None:
    rows = [
        BackupRecord(
            id=f"b{day}",
            database="app",
            dbname="app",
            server="db:5432",
            storage="local",
            storage_key=f"k{day}",
            status="completed",
            started_at=NOW - timedelta(days=day),
        )
        for day in range(5)
    ]

    decisions = retention.decide_database(
        rows, RetentionSettings(keep_last=2, keep_daily=1, minimum_redundancy=3), {}, NOW
    )

    assert [d.keep for d in decisions] == [True, True, True, False, False]
    assert decisions[0].reasons == ("minimum_redundancy 3", "keep_last 2", "daily 2026-03-29")
    assert decisions[1].reasons == ("minimum_redundancy 3", "keep_last 2")
    assert decisions[2].reasons == ("minimum_redundancy 3",)
    assert decisions[4].reasons == ("no rule keeps it (keep_last 2, daily 1)",)
