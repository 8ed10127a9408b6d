"""Guarding SQL that pgvault did not write on its way to psql: no meta-command gets through.

psql runs backslash meta-commands found in its input (``\\!`` runs a shell command, ``\\o``
writes files, ``\\copy ... to program``, ``\\gexec``, ``\\setenv``, ...): a plain dump, a
globals file or the SQL of an archive is code for the host psql runs on. Two layers keep it
out, as PostgreSQL itself does since CVE-2025-8714:

* :class:`PsqlGuard`, a streaming filter in front of psql's stdin, lexes the SQL like psql
  (quotes, dollar quotes, comments, ``COPY ... FROM stdin`` data) and refuses the first
  backslash outside COPY data with :class:`MetaCommandRefused` (``this dump contains psql
  meta-commands (\\!) at line N: refused``) before psql sees that line. pg_dump's own
  ``\\restrict KEY`` / ``\\unrestrict KEY`` lines (pg_dump >= 17.6) are dropped.
* psql's restricted mode: the guard's first line is ``\\restrict KEY`` with a fresh random
  key (:func:`restrict_key`), after which psql itself refuses every meta-command but
  ``\\unrestrict KEY``, which the input cannot know. :func:`supports_restrict` says which
  psql versions have it (13.22, 14.19, 15.14, 16.10, 17.6, 18 and later).

The lexer assumes ``standard_conforming_strings = on`` and a UTF-8-safe client encoding, as
pg_dump writes; input that changes either can only make it refuse more, and restricted mode
holds where it would miss (the reason both layers exist).
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable
from typing import IO, NoReturn

from pgvault.dumps.layers import Sink
from pgvault.errors import ArchiveError

RESTRICT_SINCE = {13: 22, 14: 19, 15: 14, 16: 10, 17: 6}
"""Per major version, the first minor release whose psql has ``\\restrict`` (18+: all)."""

_SPECIAL = re.compile(rb"[\\'\"$\-/;()\n]")
_IDENT_BYTE = re.compile(rb"[A-Za-z0-9_$\x80-\xff]")
_WORD = re.compile(rb"(?<![A-Za-z0-9_$\x80-\xff])[A-Za-z_\x80-\xff][A-Za-z0-9_$\x80-\xff]*")
_DOLLAR_TAG = re.compile(rb"\$([A-Za-z_\x80-\xff][A-Za-z0-9_\x80-\xff]*)?\$")
_E_STRING_STOP = re.compile(rb"[\\']")
_OWN_RESTRICT = re.compile(rb"^\\(un)?restrict [A-Za-z0-9]+\r?$")
_NAME = rb'(?:"(?:[^"]|"")*"|[A-Za-z0-9_$\x80-\xff]+)'
_COPY_FROM_STDIN = re.compile(
    rb"^\s*copy\s+" + _NAME + rb"(?:\." + _NAME + rb"){0,2}"
    rb"(?:\s*\([^()]*\))?\s+from\s+stdin(?:\s[^;]*)?;$",
    re.IGNORECASE | re.DOTALL,
)
_ROUTINE_WORDS = {b"create": b"c", b"or": b"o", b"replace": b"r", b"function": b"f"}
_ROUTINE_WORDS[b"procedure"] = b"p"
MAX_COPY_STATEMENT = 1024 * 1024  # bytes of a COPY statement kept to recognise it


class MetaCommandRefused(ArchiveError):
    """The input holds a psql meta-command; nothing from its line on reached psql."""


def restrict_key() -> str:
    """A fresh random key for ``\\restrict`` (64 hex characters), one per psql run."""
    return secrets.token_hex(32)


def supports_restrict(major: int, minor: int) -> bool:
    """Whether psql ``major.minor`` has restricted mode (``\\restrict``)."""
    return major >= 18 or (major in RESTRICT_SINCE and minor >= RESTRICT_SINCE[major])


class _Lexer:
    """psql's view of SQL text, line by line (psqlscan.l): quotes, dollar quotes, comments,
    parentheses and ``BEGIN ... END`` bodies of routines decide where a statement ends; a
    backslash outside them is a meta-command. Keeps enough of each statement (outside
    quotes) to recognise ``COPY ... FROM stdin``."""

    def __init__(self) -> None:
        self.line = 1
        self.quote: bytes | None = None  # b"'", b"E", b'"', b"$tag$", b"/*"
        self.comment_depth = 0
        self.paren_depth = 0
        self.begin_depth = 0
        self.words: list[bytes] = []  # first letters of the statement's leading keywords
        self.word_count = 0
        self.routine: bool | None = None  # the statement creates a function or procedure
        self.statement = bytearray()
        self.is_copy: bool | None = None
        self.copy_follows = False  # the line just lexed ended a COPY ... FROM stdin

    def fail(self, message: str) -> NoReturn:
        raise ArchiveError(f"{message} at line {self.line}: not SQL pgvault replays")

    def lex(self, line: bytes) -> None:
        """Lex one line (with its newline, if any)."""
        if b"\x00" in line:
            self.fail("a NUL byte")
        pos, end = 0, len(line)
        while pos < end:
            if self.quote is not None:
                pos = self._inside(line, pos)
                continue
            hit = _SPECIAL.search(line, pos)
            stop = end if hit is None else hit.start()
            self._text(line, pos, stop)
            if hit is None:
                return
            pos = self._special(line, stop)

    def _special(self, line: bytes, at: int) -> int:
        char = line[at : at + 1]
        if char == b"\\":
            word = re.match(rb"\\([A-Za-z]+|.?)", line[at:])
            name = (word.group(1) if word else b"").decode("utf-8", "replace")
            raise MetaCommandRefused(
                f"this dump contains psql meta-commands (\\{name}) at line {self.line}: refused"
            )
        if char == b"'":
            self.quote = b"E" if _is_escape_prefix(line, at) else b"'"
            self._note(b"''")
        elif char == b'"':
            self.quote = b'"'
            self._note(b'"')
        elif char == b"$":
            return self._dollar(line, at)
        elif char == b"-" and line.startswith(b"--", at):
            return len(line)  # a comment to the end of the line
        elif char == b"/" and line.startswith(b"/*", at):
            self.quote, self.comment_depth = b"/*", 1
            self._note(b" ")
            return at + 2
        elif char == b";":
            self._note(b";")
            if self.paren_depth == 0 and self.begin_depth == 0:
                self._end_statement(line[at + 1 :])
        else:
            if char == b"(":
                self.paren_depth += 1
            elif char == b")":
                self.paren_depth = max(0, self.paren_depth - 1)
            self._note(char)
        return at + 1

    def _text(self, line: bytes, start: int, stop: int) -> None:
        """Plain SQL between special characters: count words as psql does."""
        if start == stop:
            return
        self._note(line[start:stop])
        if self.routine is False:
            return
        for match in _WORD.finditer(line, start, stop):
            self._word(match.group(0).lower())

    def _word(self, word: bytes) -> None:
        """psql's heuristic for ``CREATE [OR REPLACE] FUNCTION|PROCEDURE ... BEGIN ... END``
        bodies, whose semicolons do not end the statement."""
        if self.word_count < 4:
            self.words.append(_ROUTINE_WORDS.get(word, b""))
        self.word_count += 1
        w = [*self.words, b"", b"", b"", b""]
        if w[0] != b"c" or (w[1] not in (b"f", b"p", b"o") and self.word_count >= 2):
            self.routine = False
        elif w[1] in (b"f", b"p") or (w[1] == b"o" and w[2] == b"r" and w[3] in (b"f", b"p")):
            self.routine = True
        elif self.word_count >= 4:
            self.routine = False
        if not self.routine or self.paren_depth != 0:
            return
        if word == b"begin":
            self.begin_depth += 1
        elif word == b"case" and self.begin_depth >= 1:
            self.begin_depth += 1
        elif word == b"end" and self.begin_depth > 0:
            self.begin_depth -= 1

    def _dollar(self, line: bytes, at: int) -> int:
        """A ``$`` outside quotes: part of a name, or the start of a dollar quote."""
        start = at
        while start > 0 and _IDENT_BYTE.match(line, start - 1):
            start -= 1
        if start < at and not re.match(rb"[A-Za-z_\x80-\xff]", line[start : start + 1]):
            self.fail("a '$' right after a number or parameter (ambiguous for psql)")
        tag = _DOLLAR_TAG.match(line, at)
        if start < at or tag is None:
            self._note(b"$")
            return at + 1
        self.quote = tag.group(0)
        self._note(b"$$")
        return tag.end()

    def _inside(self, line: bytes, pos: int) -> int:
        """Skip through a quote or comment; the position after it (or the line's end)."""
        quote = self.quote
        assert quote is not None
        if quote == b"/*":
            return self._in_comment(line, pos)
        if quote == b"E":
            return self._in_escape_string(line, pos)
        close = line.find(quote, pos)
        if close < 0:
            return len(line)
        if quote in (b"'", b'"') and line.startswith(quote, close + 1):
            return close + 2  # '' or "" inside
        self.quote = None
        if quote == b'"':
            self._note(b'"')
        return close + len(quote)

    def _in_comment(self, line: bytes, pos: int) -> int:
        while pos < len(line):
            opening, closing = line.find(b"/*", pos), line.find(b"*/", pos)
            if closing < 0 and opening < 0:
                break
            if opening >= 0 and (closing < 0 or opening < closing):
                self.comment_depth, pos = self.comment_depth + 1, opening + 2
                continue
            self.comment_depth, pos = self.comment_depth - 1, closing + 2
            if self.comment_depth == 0:
                self.quote = None
                return pos
        return len(line)

    def _in_escape_string(self, line: bytes, pos: int) -> int:
        while True:
            hit = _E_STRING_STOP.search(line, pos)
            if hit is None:
                return len(line)
            at = hit.start()
            if hit.group(0) == b"\\" or line.startswith(b"'", at + 1):
                pos = at + 2
                continue
            self.quote = None
            return at + 1

    def _note(self, text: bytes) -> None:
        """Keep the statement's text outside quotes until it is clearly not a COPY."""
        if self.is_copy is False:
            return
        self.statement += text
        head = bytes(self.statement).lstrip()
        if self.is_copy is None and len(head) >= 5:
            self.is_copy = re.match(rb"copy\s", head, re.IGNORECASE) is not None
            if not self.is_copy:
                self.statement.clear()
        elif self.is_copy and len(self.statement) > MAX_COPY_STATEMENT:
            self.fail("a COPY statement too long to recognise")

    def _end_statement(self, rest: bytes) -> None:
        statement = bytes(self.statement)
        was_copy = bool(self.is_copy)
        self.statement.clear()
        self.is_copy, self.words, self.word_count, self.routine = None, [], 0, None
        if was_copy and _COPY_FROM_STDIN.match(statement):
            if rest.strip():
                self.fail("a COPY ... FROM stdin that does not end its line")
            self.copy_follows = True


class PsqlGuard:
    """A writer passing SQL to ``sink`` (psql's stdin) only while it holds no meta-command.

    Args:
        sink: where the checked SQL goes.
        restrict: the ``\\restrict`` key to open the stream with (None: no such line, for a
            scan that feeds no psql).
        prologue: SQL of pgvault's own written right after that line, never checked.

    Raises (from :meth:`write` and :meth:`close`):
        MetaCommandRefused: a backslash command outside COPY data (its line number and
            command in the message); nothing from that line on was passed on.
        ArchiveError: SQL psql could read differently than the guard (a NUL byte, a ``$``
            glued to a number, a ``COPY ... FROM stdin`` not ending its line).
    """

    def __init__(self, sink: Sink, restrict: str | None, prologue: bytes = b"") -> None:
        self._sink = sink
        self._pending = b""
        self._lexer = _Lexer()
        self._in_copy = False
        self._refused: ArchiveError | None = None
        opening = b"" if restrict is None else f"\\restrict {restrict}\n".encode()
        if opening or prologue:
            sink.write(opening + prologue)

    @property
    def lines(self) -> int:
        """Lines passed so far."""
        return self._lexer.line - 1

    def write(self, data: bytes, /) -> int:
        """Check and forward the complete lines of ``data``; returns its length in bytes."""
        if self._refused is not None:
            raise self._refused
        buf = self._pending + data
        end = buf.rfind(b"\n") + 1
        self._pending = buf[end:]
        if end:
            self._forward(buf, end)
        return len(data)

    def close(self) -> None:
        """Check and forward the last line (one without a newline)."""
        if self._refused is not None:
            raise self._refused
        if self._pending:
            tail, self._pending = self._pending, b""
            self._forward(tail, len(tail))

    def _forward(self, block: bytes, end: int) -> None:
        out: list[bytes] = []
        pos = 0
        lexer = self._lexer
        try:
            while pos < end:
                if self._in_copy:
                    stop = self._copy_run(block, pos, end)
                    out.append(block[pos:stop])
                    pos = stop
                    continue
                newline = block.find(b"\n", pos, end)
                stop = end if newline < 0 else newline + 1
                line = block[pos:stop]
                if lexer.quote is None and _OWN_RESTRICT.match(line.rstrip(b"\n")):
                    out.append(b"\n")  # pg_dump's own \restrict line: dropped
                else:
                    lexer.lex(line)
                    out.append(line)
                lexer.line += 1
                if lexer.copy_follows:
                    lexer.copy_follows, self._in_copy = False, True
                pos = stop
        except ArchiveError as exc:
            self._refused = exc
            raise
        finally:
            if out:
                self._sink.write(b"".join(out))

    def _copy_run(self, block: bytes, pos: int, end: int) -> int:
        """COPY data from the line start ``pos`` through the ``\\.`` line (psql ends the data
        at a line that is exactly ``\\.``; any line starting so ends it here, which is never
        later); returns where the data (or the block) ends."""
        lexer = self._lexer
        if block.startswith(b"\\.", pos):
            start = pos
        else:
            hit = block.find(b"\n\\.", pos, end)
            if hit < 0:
                lexer.line += block.count(b"\n", pos, end)
                return end
            start = hit + 1
        lexer.line += block.count(b"\n", pos, start)
        newline = block.find(b"\n", start, end)
        stop = end if newline < 0 else newline + 1
        lexer.line += 1
        self._in_copy = False
        return stop


def _is_escape_prefix(line: bytes, quote_at: int) -> bool:
    """Whether the quote at ``quote_at`` opens an ``E'...'`` string (backslash escapes)."""
    if quote_at == 0 or line[quote_at - 1 : quote_at] not in (b"E", b"e"):
        return False
    return quote_at == 1 or not _IDENT_BYTE.match(line, quote_at - 2)


class _Discard:
    def write(self, data: bytes, /) -> int:
        return len(data)


def scan(stream: IO[bytes], chunk_size: int = 1024 * 1024) -> int:
    """Read ``stream`` to its end through a :class:`PsqlGuard`; returns its line count.

    Raises:
        MetaCommandRefused: as :class:`PsqlGuard`.
    """
    guard = PsqlGuard(_Discard(), None)
    while chunk := stream.read(chunk_size):
        guard.write(chunk)
    guard.close()
    return guard.lines


def check_text(texts: Iterable[bytes]) -> None:
    """Check SQL held in memory (a globals file) before anything runs it.

    Raises:
        MetaCommandRefused: as :class:`PsqlGuard`.
    """
    guard = PsqlGuard(_Discard(), None)
    for text in texts:
        guard.write(text)
    guard.close()
