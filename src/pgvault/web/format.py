"""How the pages write numbers, times and policies (pure functions, the templates' filters).

Sizes are binary units (IEC 80000-13: KiB, MiB, GiB), times are written in UTC by the server
inside ``<time datetime=...>`` (the page's script rewrites them in the viewer's time zone and
keeps UTC in the tooltip), durations are short words (``1 min 5 s``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo

from markupsafe import Markup

from pgvault.config.operations import RetentionSettings
from pgvault.errors import ConfigError, PgvaultError
from pgvault.operations.retention import zone

UNITS = ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB")


def size(value: int | float | None) -> str:
    """``1536`` -> ``1.5 KiB``; ``None`` -> ``-``. Bytes below 1 KiB are shown whole."""
    if value is None:
        return "-"
    amount = float(value)
    for unit in UNITS:
        if abs(amount) < 1024 or unit == UNITS[-1]:
            if unit == "bytes":
                return f"{int(amount)} bytes"
            return f"{amount:.1f} {unit}"
        amount /= 1024
    raise AssertionError("unreachable")  # pragma: no cover


def rate(value: float | None) -> str:
    """Bytes per second as ``12.0 MiB/s`` (``-`` when unknown)."""
    return "-" if value is None else f"{size(value)}/s"


def duration(seconds: float | None) -> str:
    """``65`` -> ``1 min 5 s``; ``7300`` -> ``2 h 1 min``; ``0.4`` -> ``0.4 s``."""
    if seconds is None:
        return "-"
    if seconds < 10:
        return f"{seconds:.1f} s"
    whole = int(round(seconds))
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes} min"
    if minutes:
        return f"{minutes} min {secs} s"
    return f"{secs} s"


def utc_text(when: datetime) -> str:
    """``2024-05-01 12:00:00 UTC``."""
    return f"{when.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC"


def moment(when: datetime | None, zone: tzinfo | None = None) -> Markup:
    """A ``<time>`` element: the instant in UTC for the page's script (which shows it in the
    viewer's zone), UTC in its tooltip; with ``zone`` the text is that zone's wall time and
    the script leaves it (a schedule's own zone)."""
    if when is None:
        return Markup("-")
    iso = when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    title = utc_text(when)
    if zone is not None:
        local = when.astimezone(zone)
        text = f"{local:%Y-%m-%d %H:%M} {local.tzname() or ''} ({getattr(zone, 'key', zone)})"
        return Markup('<time datetime="{}" title="{}" data-fixed>{}</time>').format(
            iso, title, text.strip()
        )
    return Markup('<time datetime="{}" title="{}">{}</time>').format(iso, title, title)


def age(seconds: float | None) -> str:
    """How long ago, roughly: ``3 h ago``, ``2 d ago``."""
    if seconds is None:
        return "never"
    return f"{duration(max(seconds, 0))} ago"


def retention_words(policy: RetentionSettings | None) -> str:
    """A policy in words: ``keep the last 30, keep 7 daily, 4 weekly, 12 monthly; failed
    runs for 7 days`` (``no retention policy: nothing is deleted`` without rules)."""
    if policy is None:
        return "no retention policy: nothing is deleted"
    parts = []
    if policy.keep_last is not None:
        parts.append(f"keep the last {policy.keep_last}")
    if policy.max_age_days is not None:
        parts.append(f"keep everything younger than {policy.max_age_days:g} days")
    gfs = [
        f"{count} {name}"
        for name in ("daily", "weekly", "monthly", "yearly")
        if (count := getattr(policy, f"keep_{name}")) is not None
    ]
    if gfs:
        parts.append("keep " + ", ".join(gfs))
    text = ", ".join(parts) if parts else "no rule keeps or deletes completed backups"
    if policy.failed_max_age_days is not None:
        text += f"; failed runs are removed after {policy.failed_max_age_days:g} days"
    exempt = [
        name
        for name, included in (
            ("pinned", policy.include_pinned),
            ("pre-restore", policy.include_pre_restore),
        )
        if not included
    ]
    if exempt:
        text += f"; {' and '.join(exempt)} backups are never deleted by it"
    return text


@dataclass(frozen=True)
class Sparkline:
    """An SVG polyline of a series: ``points`` in a ``width`` x ``height`` box, the indexes
    of ``drops`` (a value under half of the one before it), and the range in words."""

    points: str
    drops: tuple[tuple[float, float], ...]
    width: int
    height: int
    low: float
    high: float


def sparkline(values: Sequence[float | None], width: int = 120, height: int = 28) -> Sparkline:
    """Scale a series (oldest first; None skipped) into an SVG box with 2 px padding; a
    value under half of the previous one is marked as a drop (a backup that shrank)."""
    series = [float(v) for v in values if v is not None]
    pad = 2.0
    if not series:
        return Sparkline("", (), width, height, 0.0, 0.0)
    low, high = min(series), max(series)
    span = high - low
    step = (width - 2 * pad) / max(len(series) - 1, 1)

    def y(value: float) -> float:  # a flat series is drawn across the middle
        share = (value - low) / span if span else 0.5
        return round(height - pad - share * (height - 2 * pad), 1)

    coords = [(round(pad + i * step, 1), y(v)) for i, v in enumerate(series)]
    if len(coords) == 1:  # one backup: a short level line, so it shows
        coords.append((round(width - pad, 1), coords[0][1]))
    drops = tuple(
        coords[i]
        for i in range(1, len(series))
        if series[i - 1] > 0 and series[i] < series[i - 1] / 2
    )
    return Sparkline(" ".join(f"{x},{y}" for x, y in coords), drops, width, height, low, high)


def svg_sparkline(values: Sequence[float | None], label: str) -> Markup:
    """The ``<svg>`` of :func:`sparkline` with an accessible ``label`` (drops as circles)."""
    line = sparkline(values)
    if not line.points:
        return Markup('<span class="muted">no data yet</span>')
    circles = Markup("").join(
        Markup('<circle class="drop" cx="{}" cy="{}" r="2.5"></circle>').format(x, y)
        for x, y in line.drops
    )
    return Markup(
        '<svg class="spark" viewBox="0 0 {w} {h}" width="{w}" height="{h}" role="img" '
        'aria-label="{label}"><polyline points="{points}"></polyline>{circles}</svg>'
    ).format(w=line.width, h=line.height, label=label, points=line.points, circles=circles)


def label_pairs(text: str) -> dict[str, str]:
    """``key=value`` lines (or comma-separated) into a dict; blank parts skipped.

    Raises:
        ConfigError: a part without ``=`` or with an empty key (the message names it).
    """
    found: dict[str, str] = {}
    for part in text.replace(",", "\n").splitlines():
        part = part.strip()
        if not part:
            continue
        key, sep, value = part.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"label {part!r} is not key=value: write one key=value per line")
        found[key.strip()] = value.strip()
    return found


def zone_of(name: str | None) -> tzinfo:
    """The IANA zone ``name`` (UTC for None or an unknown name: a page never fails on it)."""
    try:
        return zone(name)
    except PgvaultError:
        return UTC
