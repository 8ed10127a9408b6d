"""Filtering a plain SQL dump on its way to psql: the version fallback of restores.

pg_dump's documentation says a dump is not guaranteed to load into an older major version,
even one taken from a server of that version. What pg_dump 16, 17 and 18 write (read from
their release notes and seen on PostgreSQL 15) that an older server rejects, and what
:class:`SetFilter` makes of it (only SQL lines are examined; ``COPY ... FROM stdin`` data
always passes untouched, chunk by chunk):

* ``SET transaction_timeout = 0;`` (pg_dump >= 17; "unrecognized configuration parameter"
  on <= 16), and any other ``SET`` of a parameter missing from the server's ``pg_settings``:
  the line is dropped.
* ``CREATE SUBSCRIPTION ... WITH (..., run_as_owner = true)``: pg_dump >= 16 writes
  ``run_as_owner = true`` even for a subscription of a 15 server (whose subscriptions always
  ran as their owner; "unrecognized subscription parameter" on 15). Options are dropped by
  the version that added them: ``run_as_owner``, ``password_required``, ``origin`` (16),
  ``failover`` (17); ``streaming = parallel`` (16) becomes ``streaming = on``. A dropped
  option that changes behaviour (``origin = none``, ``failover = true``,
  ``password_required = false``) is reported.
* ``CREATE PUBLICATION ... WITH (..., publish_generated_columns = ...)`` (18): dropped below
  18 (``stored`` is reported: older servers never publish generated columns).

:data:`VERSION_ERRORS` are the server errors that send a restore to this fallback.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from pgvault.dumps.layers import Sink

_SET_LINE = re.compile(rb"^SET\s+([A-Za-z_][A-Za-z0-9_.]*)\s*(?:=|TO)\s.*;\s*$")
_COPY_START = re.compile(rb"^COPY\s.*\sFROM\s+stdin;\s*$")
_COPY_END = b"\\."
_WITH_OPTIONS = re.compile(rb"^(CREATE (?:SUBSCRIPTION|PUBLICATION)) ")
UNKNOWN_PARAMETER = re.compile(r'unrecognized configuration parameter "([^"]+)"')
VERSION_ERRORS = (
    UNKNOWN_PARAMETER,
    re.compile(r'unrecognized (?:subscription|publication) parameter: "([^"]+)"'),
    re.compile(r"streaming requires a Boolean value"),  # streaming = parallel on 15
)

# (statement, option) -> the major version that added it; None value: any value.
OPTION_ADDED: dict[tuple[bytes, bytes], int] = {
    (b"CREATE SUBSCRIPTION", b"run_as_owner"): 16,
    (b"CREATE SUBSCRIPTION", b"password_required"): 16,
    (b"CREATE SUBSCRIPTION", b"origin"): 16,
    (b"CREATE SUBSCRIPTION", b"failover"): 17,
    (b"CREATE PUBLICATION", b"publish_generated_columns"): 18,
}
# Dropping these option values changes what the object does: say so.
_NOTEWORTHY = {
    b"origin": (b"none",),
    b"failover": (b"true", b"on"),
    b"password_required": (b"false", b"off"),
    b"publish_generated_columns": (b"stored", b"true", b"on"),
}


def version_error(line: str) -> bool:
    """Whether a server error line is one the fallback exists for (a newer pg_dump's
    construct an older server rejects)."""
    return any(pattern.search(line) for pattern in VERSION_ERRORS)


class SetFilter:
    """A writer passing a plain dump to ``sink`` minus ``SET`` lines for unknown parameters.

    Args:
        sink: where the filtered SQL goes (psql's stdin).
        known: parameter names the server accepts (``SELECT name FROM pg_settings``);
            dotted custom names (``myapp.x``) are always kept.
        server_major: the target server's major version; None keeps every statement
            option (only unknown ``SET`` lines are dropped).

    Attributes:
        dropped: names of the ``SET`` parameters dropped.
        changes: one line per rewritten statement option (``run_as_owner dropped ...``).
        notes: the subset of ``changes`` that alters behaviour (for the restore's warnings).
    """

    def __init__(self, sink: Sink, known: Iterable[str], server_major: int | None = None) -> None:
        self._sink = sink
        self._known = {name.lower() for name in known}
        self._major = server_major
        self._pending = b""
        self._in_copy = False
        self.dropped: list[str] = []
        self.changes: list[str] = []
        self.notes: list[str] = []

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
        elif self._major is not None and _WITH_OPTIONS.match(stripped):
            return self._options(stripped, line[len(stripped) :])
        return line

    def _options(self, statement: bytes, newline: bytes) -> bytes:
        """``CREATE SUBSCRIPTION|PUBLICATION ... WITH (...)``: drop or rewrite the options
        the server is too old for."""
        match = _WITH_OPTIONS.match(statement)
        assert match is not None and self._major is not None
        verb = match.group(1)
        start = _with_clause(statement)
        if start < 0:
            return statement + newline
        end = statement.rfind(b")")
        kept = []
        for option in _split_options(statement[start:end]):
            name, _, value = (part.strip() for part in option.partition(b"="))
            lowered, low_value = name.lower(), value.lower().strip(b"'")
            added = OPTION_ADDED.get((verb, lowered))
            if added is not None and self._major < added:
                self._change(
                    f"{lowered.decode()} = {value.decode()} dropped ({added}+)", lowered, low_value
                )
                continue
            if (verb, lowered, low_value) == (b"CREATE SUBSCRIPTION", b"streaming", b"parallel"):
                if self._major < 16:
                    self._change("streaming = parallel became streaming = on (16+)", b"", b"")
                    option = name + b" = on"
            kept.append(option.strip())
        clause = b"WITH (" + b", ".join(kept) + b")" if kept else b""
        head = statement[: start - len(b"WITH (")].rstrip()
        return head + (b" " + clause if clause else b"") + statement[end + 1 :] + newline

    def _change(self, text: str, name: bytes, value: bytes) -> None:
        self.changes.append(text)
        if value in _NOTEWORTHY.get(name, ()):
            self.notes.append(f"the server is too old for {text.split(' dropped')[0]}: dropped")

    def close(self) -> None:
        """Flush the last partial line."""
        if self._pending:
            tail = self._pending
            self._pending = b""
            self._sink.write(tail if self._in_copy else self._sql_line(tail))


def _with_clause(statement: bytes) -> int:
    """Offset just past the last ``WITH (`` outside quotes in ``statement``, or -1."""
    found, quoted, i = -1, False, 0
    while i < len(statement):
        ch = statement[i : i + 1]
        if ch == b"'":
            quoted = not quoted
        elif not quoted and statement.startswith(b"WITH (", i):
            found = i + len(b"WITH (")
        i += 1
    return found


def _split_options(body: bytes) -> list[bytes]:
    """``a = b, c = 'x, y'`` -> ``[b"a = b", b" c = 'x, y'"]`` (commas inside quotes kept)."""
    parts, current, quoted = [], b"", False
    for byte in body:
        ch = bytes([byte])
        if ch == b"'":
            quoted = not quoted
        if ch == b"," and not quoted:
            parts.append(current)
            current = b""
        else:
            current += ch
    if current.strip():
        parts.append(current)
    return parts


def _find_copy_end(buf: bytes, pos: int) -> int:
    r"""Offset just past the ``\.`` terminator line of COPY data starting at ``pos``, or -1."""
    if buf.startswith(_COPY_END + b"\n", pos):
        return pos + 3
    hit = buf.find(b"\n" + _COPY_END + b"\n", pos)
    return -1 if hit < 0 else hit + 4
