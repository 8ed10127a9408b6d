"""Filtering a plain SQL dump on its way to psql: dropping ``SET`` lines the server rejects.

pg_dump >= 17 writes ``SET transaction_timeout = 0;``, which PostgreSQL <= 16 refuses with
``unrecognized configuration parameter``. :class:`SetFilter` removes top-level
``SET name = ...;`` lines whose parameter the target server does not know, and never
touches ``COPY ... FROM stdin`` data. It works chunk by chunk: data rows pass through
as whole slices, only SQL lines between them are examined.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from pgvault.dumps.layers import Sink

_SET_LINE = re.compile(rb"^SET\s+([A-Za-z_][A-Za-z0-9_.]*)\s*(?:=|TO)\s.*;\s*$")
_COPY_START = re.compile(rb"^COPY\s.*\sFROM\s+stdin;\s*$")
_COPY_END = b"\\."
UNKNOWN_PARAMETER = re.compile(r'unrecognized configuration parameter "([^"]+)"')


class SetFilter:
    """A writer passing a plain dump to ``sink`` minus ``SET`` lines for unknown parameters.

    Args:
        sink: where the filtered SQL goes (psql's stdin).
        known: parameter names the server accepts (``SELECT name FROM pg_settings``);
            dotted custom names (``myapp.x``) are always kept.
    """

    def __init__(self, sink: Sink, known: Iterable[str]) -> None:
        self._sink = sink
        self._known = {name.lower() for name in known}
        self._pending = b""
        self._in_copy = False
        self.dropped: list[str] = []

    def write(self, data: bytes, /) -> int:
        """Filter and forward a chunk; returns its length in bytes."""
        buf = self._pending + data
        out: list[bytes] = []
        pos = 0
        while pos < len(buf):
            if self._in_copy:
                end = _find_copy_end(buf, pos)
                if end < 0:
                    # keep from the last newline on, in case the terminator straddles chunks;
                    # so `pos` always sits at a line start or on a newline here
                    keep = max(pos, buf.rfind(b"\n", pos))
                    out.append(buf[pos:keep])
                    pos = keep
                    break
                out.append(buf[pos:end])
                pos = end
                self._in_copy = False
                continue
            newline = buf.find(b"\n", pos)
            if newline < 0:
                break
            line = buf[pos : newline + 1]
            pos = newline + 1
            out.append(self._sql_line(line))
        self._pending = buf[pos:]
        self._sink.write(b"".join(out))
        return len(data)

    def _sql_line(self, line: bytes) -> bytes:
        stripped = line.rstrip(b"\r\n")
        match = _SET_LINE.match(stripped)
        if match is not None:
            name = match.group(1).decode().lower()
            if "." not in name and name not in self._known:
                self.dropped.append(name)
                return b""
        elif _COPY_START.match(stripped):
            self._in_copy = True
        return line

    def close(self) -> None:
        """Flush the last partial line."""
        if self._pending:
            tail = self._pending
            self._pending = b""
            self._sink.write(tail if self._in_copy else self._sql_line(tail))


def _find_copy_end(buf: bytes, pos: int) -> int:
    r"""Offset just past the ``\.`` terminator line of COPY data starting at ``pos``, or -1."""
    if buf.startswith(_COPY_END + b"\n", pos):
        return pos + 3
    hit = buf.find(b"\n" + _COPY_END + b"\n", pos)
    return -1 if hit < 0 else hit + 4
