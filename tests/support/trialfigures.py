"""The figures the trials print at the end of a run (one line each), collected here so the
trials' conftest can print them in the terminal summary."""

from __future__ import annotations

FIGURES: list[str] = []
"""Lines to print, in the order the trials ran."""
