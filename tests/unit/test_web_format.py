"""The dashboard's pure helpers: binary sizes, durations, times, retention in words,
sparklines (with the drop marks), labels typed in a form, and the CSRF/session signatures."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pgvault.config.operations import RetentionSettings
from pgvault.errors import ConfigError
from pgvault.web import format as fmt


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (None, "-"),
        (0, "0 bytes"),
        (1023, "1023 bytes"),
        (1024, "1.0 KiB"),
        (1536, "1.5 KiB"),
        (10 * 1024**2, "10.0 MiB"),
        (3 * 1024**4, "3.0 TiB"),
        (2 * 1024**6, "2048.0 PiB"),
    ],
)
def test_sizes_are_binary_units(value: int | None, text: str) -> None:
    assert fmt.size(value) == text


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (None, "-"),
        (0.42, "0.4 s"),
        (42, "42 s"),
        (65, "1 min 5 s"),
        (7300, "2 h 1 min"),
        (90000, "1 d 1 h"),
    ],
)
def test_durations_in_words(seconds: float | None, text: str) -> None:
    assert fmt.duration(seconds) == text


def test_a_moment_is_utc_for_the_script_and_its_tooltip() -> None:
    when = datetime(2026, 3, 29, 0, 30, tzinfo=UTC)
    html = str(fmt.moment(when))
    assert 'datetime="2026-03-29T00:30:00Z"' in html
    assert 'title="2026-03-29 00:30:00 UTC"' in html and "data-fixed" not in html
    berlin = str(fmt.moment(when + timedelta(hours=1), ZoneInfo("Europe/Berlin")))
    assert "2026-03-29 03:30 CEST (Europe/Berlin)" in berlin and "data-fixed" in berlin
    assert str(fmt.moment(None)) == "-"


def test_retention_in_words() -> None:
    policy = RetentionSettings(
        keep_last=30, keep_daily=7, keep_weekly=4, keep_monthly=12, failed_max_age_days=7
    )
    assert fmt.retention_words(policy) == (
        "keep the last 30, keep 7 daily, 4 weekly, 12 monthly; failed runs are removed after "
        "7 days; pinned and pre-restore backups are never deleted by it"
    )
    assert fmt.retention_words(None) == "no retention policy: nothing is deleted"
    bare = RetentionSettings(include_pinned=True, failed_max_age_days=None)
    assert fmt.retention_words(bare) == (
        "no rule keeps or deletes completed backups; pre-restore backups are never deleted by it"
    )


def test_sparkline_scales_into_its_box_and_marks_drops() -> None:
    line = fmt.sparkline([100, 110, 40, 120, None, 121])
    xs = [float(p.split(",")[0]) for p in line.points.split()]
    ys = [float(p.split(",")[1]) for p in line.points.split()]
    assert xs[0] == 2.0 and xs[-1] == 118.0 and len(xs) == 5
    assert min(ys) == 2.0 and max(ys) == 26.0  # 120/121 on top, 40 at the bottom
    assert line.drops == ((xs[2], ys[2]),)  # 40 after 110: under half
    assert fmt.sparkline([]).points == ""
    assert len(fmt.sparkline([5]).points.split()) == 2  # one value still draws a line
    svg = str(fmt.svg_sparkline([1, 2], "sizes <of> backups"))
    assert 'aria-label="sizes &lt;of&gt; backups"' in svg and "<polyline" in svg


@given(st.lists(st.floats(min_value=0, max_value=1e15), min_size=1, max_size=40))
def test_sparkline_points_stay_inside_the_box(values: list[float]) -> None:
    line = fmt.sparkline(values)
    for point in line.points.split():
        x, y = (float(v) for v in point.split(","))
        assert 0 <= x <= line.width and 0 <= y <= line.height


def test_labels_from_a_form() -> None:
    assert fmt.label_pairs("a=1\n b = two , c=\n\n") == {"a": "1", "b": "two", "c": ""}
    with pytest.raises(ConfigError, match="not key=value"):
        fmt.label_pairs("nokey")
    with pytest.raises(ConfigError, match="not key=value"):
        fmt.label_pairs("=x")
