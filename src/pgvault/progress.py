"""Progress of long operations, as numbers people can read (and shells draw).

A domain operation reports :class:`ProgressEvent` s to a callback; shells turn them into
rich bars (a terminal), one line per phase (logs, pipes) or the job API's numbers, with a
:class:`Meter` for the rate and the time left. Nothing here does I/O.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

Unit = Literal["bytes", "entries", "steps"]


@dataclass(frozen=True)
class ProgressEvent:
    """Where an operation is: ``phase`` (``"dumping"``, ``"loading"``, ...), ``done`` of
    ``total`` (an estimate for backups, None when unknown) in ``unit``; ``detail`` is a
    one-line description of a new step (a restore's phases)."""

    phase: str
    done: int = 0
    total: int | None = None
    unit: Unit = "bytes"
    detail: str | None = None

    @property
    def percent(self) -> float | None:
        """0-100 (capped at 99.9 until the phase ends, since totals are estimates)."""
        if not self.total or self.total <= 0:
            return None
        return min(99.9, 100.0 * self.done / self.total)


Report = Callable[[ProgressEvent], None]
"""Receives the progress of one operation (called often: keep it cheap)."""


def step(report: Report | None, detail: str, phase: str = "step") -> None:
    """Report a new step (one line of text) to ``report``, if any."""
    if report is not None:
        report(ProgressEvent(phase=phase, unit="steps", detail=detail))


class Meter:
    """Rate (per second, smoothed) and time left of a stream of ``(done, total)``.

    Args:
        clock: seconds, monotonic (injectable for tests).
        window: seconds between rate samples.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic, window: float = 0.5) -> None:
        self._clock = clock
        self._window = window
        self._mark: tuple[float, int] | None = None
        self.rate: float | None = None
        self.phase: str | None = None

    def update(self, event: ProgressEvent) -> None:
        """Take the next event (a new phase restarts the rate)."""
        now = self._clock()
        if event.phase != self.phase:
            self.phase, self._mark, self.rate = event.phase, (now, event.done), None
            return
        assert self._mark is not None
        then, before = self._mark
        if now - then >= self._window:
            rate = (event.done - before) / (now - then)
            self.rate = rate if self.rate is None else 0.5 * self.rate + 0.5 * rate
            self._mark = (now, event.done)

    def eta(self, event: ProgressEvent) -> float | None:
        """Seconds left at the current rate, when the total and a rate are known."""
        if not event.total or not self.rate or self.rate <= 0:
            return None
        return max(0.0, (event.total - event.done) / self.rate)
