"""Cron expressions become time-zone-aware APScheduler triggers: crontab weekdays (0 and 7 =
Sunday, unlike APScheduler 3's Monday = 0), seconds as an optional first field, DST changes,
next run times, the missed-run lookup and the staleness derived from schedules."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from pgvault.config.settings import Settings
from pgvault.errors import ConfigError
from pgvault.operations import schedules

BERLIN = ZoneInfo("Europe/Berlin")


def _fires(expr: str, tz: str | None, start: datetime, count: int) -> list[datetime]:
    return schedules.fire_times(schedules.parse_cron(expr, tz), start, count)


@pytest.mark.parametrize(
    ("field", "weekdays"),
    [
        ("0", ["Sun"]),
        ("7", ["Sun"]),
        ("1-5", ["Mon", "Tue", "Wed", "Thu", "Fri"]),
        ("0,6", ["Sat", "Sun"]),
        ("*/2", ["Sun", "Tue", "Thu", "Sat"]),
        ("mon-fri", ["Mon", "Tue", "Wed", "Thu", "Fri"]),
        ("*", ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]),
    ],
)
def test_weekdays_follow_crontab(field: str, weekdays: list[str]) -> None:
    fires = _fires(f"0 3 * * {field}", None, datetime(2026, 3, 2, tzinfo=UTC), 7)

    assert sorted({f.strftime("%a") for f in fires}, key=weekdays.index) == weekdays


def test_daily_local_time_holds_across_dst_changes() -> None:
    spring = _fires("0 3 * * *", "Europe/Berlin", datetime(2026, 3, 27, tzinfo=UTC), 4)
    autumn = _fires("0 3 * * *", "Europe/Berlin", datetime(2026, 10, 23, tzinfo=UTC), 4)

    assert [f.astimezone(BERLIN).hour for f in spring + autumn] == [3] * 8
    assert [f.hour for f in spring] == [2, 2, 1, 1]  # CET then CEST, in UTC
    assert [f.hour for f in autumn] == [1, 1, 2, 2]
    assert all(f.tzinfo == UTC for f in spring)


def test_time_skipped_by_dst_runs_once() -> None:
    fires = _fires("30 2 * * *", "Europe/Berlin", datetime(2026, 3, 28, 12, tzinfo=UTC), 3)

    assert len({f.date() for f in fires}) == 3
    assert fires[1] - fires[0] < timedelta(hours=24)


def test_seconds_as_first_of_six_fields() -> None:
    fires = _fires("*/3 * * * * *", None, datetime(2026, 1, 1, 0, 0, 1, tzinfo=UTC), 3)

    assert [f.second for f in fires] == [3, 6, 9]


@pytest.mark.parametrize(
    ("expr", "tz", "message"),
    [
        ("0 2 * *", None, "has 4 fields"),
        ("0 25 * * *", None, "higher than the maximum"),
        ("0 2 * * 8", None, "days are 0-7"),
        ("0 2 * * *", "Mars/Olympus", "unknown time zone"),
    ],
)
def test_bad_expressions_are_config_errors(expr: str, tz: str | None, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        schedules.parse_cron(expr, tz)


def test_latest_fire_time_within_the_grace() -> None:
    trigger = schedules.parse_cron("0 2 * * *", "UTC")
    now = datetime(2026, 5, 1, 2, 30, tzinfo=UTC)

    assert schedules.latest_fire_time(trigger, now, 3600) == datetime(2026, 5, 1, 2, tzinfo=UTC)
    assert schedules.latest_fire_time(trigger, now, 600) is None
    assert schedules.latest_fire_time(trigger, now.replace(hour=2, minute=0), 60) == now.replace(
        minute=0
    )


def _settings(**database: object) -> Settings:
    return Settings(
        databases={"app": {"url": "postgresql://u@db/app", **database}},  # type: ignore[dict-item]
        scheduler={"prune_cron": None},  # type: ignore[arg-type]
    )


def test_next_runs_lists_every_job_and_skips_disabled_ones() -> None:
    settings = _settings(
        timezone="Asia/Kolkata",
        schedules={
            "daily": {"cron": "0 2 * * *"},
            "weekly": {"cron": "0 3 * * 0", "timezone": "UTC", "enabled": False},
        },
        verify={"cron": "0 5 * * 6"},
    )

    infos = schedules.next_runs(settings, datetime(2026, 5, 1, tzinfo=UTC), count=2)

    assert [(i.kind, i.name, i.timezone, i.enabled) for i in infos] == [
        ("backup", "daily", "Asia/Kolkata", True),
        ("backup", "weekly", "UTC", False),
        ("verify", "verify", "Asia/Kolkata", True),
    ]
    assert infos[0].next_runs == [
        datetime(2026, 5, 1, 20, 30, tzinfo=UTC),
        datetime(2026, 5, 2, 20, 30, tzinfo=UTC),
    ]
    assert infos[1].next_runs == []


def test_longest_gap_comes_from_the_densest_schedule() -> None:
    settings = _settings(
        schedules={"weekdays": {"cron": "0 2 * * 1-5"}, "weekly": {"cron": "0 3 * * 0"}}
    )

    gap = schedules.longest_gap(settings, "app", datetime(2026, 5, 1, tzinfo=UTC))

    assert gap == 3 * 86400  # Friday 02:00 -> Monday 02:00
    assert schedules.longest_gap(_settings(), "app") is None
