"""WAL file names and LSN arithmetic (pure; no I/O).

A WAL segment file is named ``TTTTTTTTXXXXXXXXYYYYYYYY``: the timeline, then the segment
number split into a "log id" and a segment within it, each as 8 upper-case hex digits
(PostgreSQL ``xlog_internal.h``: ``XLogFileName``). With the default 16 MiB segments there
are 256 segments per log id. A timeline history file is ``TTTTTTTT.history``. An LSN is
printed ``X/Y`` (two hex halves of a 64-bit byte position).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pgvault.errors import ConfigError

SEGMENT_RE = re.compile(r"^[0-9A-F]{24}$")
HISTORY_RE = re.compile(r"^[0-9A-F]{8}\.history$")
LSN_RE = re.compile(r"^([0-9A-Fa-f]{1,8})/([0-9A-Fa-f]{1,8})$")
DEFAULT_SEGMENT_SIZE = 16 * 1024 * 1024  # bytes


def parse_lsn(text: str) -> int:
    """``"0/3000028"`` -> 50331688 (bytes from the start of WAL).

    Raises:
        ConfigError: not an LSN (the message shows the expected form).
    """
    match = LSN_RE.match(text.strip())
    if match is None:
        raise ConfigError(f"{text!r} is not an LSN: use the form 0/3000028")
    return (int(match.group(1), 16) << 32) | int(match.group(2), 16)


def format_lsn(value: int) -> str:
    """50331688 -> ``"0/3000028"`` (PostgreSQL's ``%X/%X``)."""
    return f"{value >> 32:X}/{value & 0xFFFFFFFF:X}"


def segments_per_id(segment_size: int) -> int:
    """Segments per 4 GiB "log id" (``XLogSegmentsPerXLogId``): 256 for 16 MiB segments."""
    return 0x100000000 // segment_size


@dataclass(frozen=True, order=True)
class Segment:
    """One WAL segment: its timeline and segment number (``XLogSegNo``)."""

    timeline: int
    number: int

    def name(self, segment_size: int = DEFAULT_SEGMENT_SIZE) -> str:
        """The file name, ``000000010000000000000003``."""
        per = segments_per_id(segment_size)
        return f"{self.timeline:08X}{self.number // per:08X}{self.number % per:08X}"

    def start_lsn(self, segment_size: int = DEFAULT_SEGMENT_SIZE) -> int:
        """The LSN of its first byte."""
        return self.number * segment_size

    def end_lsn(self, segment_size: int = DEFAULT_SEGMENT_SIZE) -> int:
        """The LSN just past its last byte (the next segment's start)."""
        return (self.number + 1) * segment_size

    def next(self) -> Segment:
        """The following segment on the same timeline."""
        return Segment(self.timeline, self.number + 1)


def parse_segment(name: str, segment_size: int = DEFAULT_SEGMENT_SIZE) -> Segment:
    """``"000000010000000000000003"`` -> ``Segment(1, 3)``.

    Raises:
        ConfigError: not a WAL segment file name.
    """
    if not SEGMENT_RE.match(name):
        raise ConfigError(f"{name!r} is not a WAL segment name (24 hex digits)")
    per = segments_per_id(segment_size)
    log_id, seg = int(name[8:16], 16), int(name[16:24], 16)
    if seg >= per:
        raise ConfigError(f"{name!r} is not a segment of {segment_size} bytes")
    return Segment(int(name[:8], 16), log_id * per + seg)


def segment_of(lsn: int, timeline: int, segment_size: int = DEFAULT_SEGMENT_SIZE) -> Segment:
    """The segment holding the byte at ``lsn`` on ``timeline``."""
    return Segment(timeline, lsn // segment_size)


def is_segment(name: str) -> bool:
    """Whether ``name`` is a complete WAL segment file name (not ``.partial``)."""
    return bool(SEGMENT_RE.match(name))


def is_history(name: str) -> bool:
    """Whether ``name`` is a timeline history file name (``00000002.history``)."""
    return bool(HISTORY_RE.match(name))


def history_name(timeline: int) -> str:
    """``2`` -> ``"00000002.history"``."""
    return f"{timeline:08X}.history"


def timeline_of(name: str) -> int:
    """The timeline a segment or history file name belongs to.

    Raises:
        ConfigError: neither a segment nor a history name.
    """
    if not (is_segment(name) or is_history(name)):
        raise ConfigError(f"{name!r} is neither a WAL segment nor a timeline history file")
    return int(name[:8], 16)


def missing_between(numbers: list[int]) -> list[tuple[int, int]]:
    """Gaps in a sorted list of segment numbers, as inclusive ``(first, last)`` ranges.

    ``[1, 2, 5, 6, 9]`` -> ``[(3, 4), (7, 8)]``.
    """
    gaps = []
    for before, after in zip(numbers, numbers[1:], strict=False):
        if after > before + 1:
            gaps.append((before + 1, after - 1))
    return gaps
