"""Reading dumps: their table of contents, the tables they carry, and their object counts.

The TOC comes from ``pg_restore --list`` (custom and directory archives); for plain SQL a
:class:`CopyScanner` finds the ``COPY ... FROM stdin;`` headers as the bytes stream past.
A directory archive is stored as a tar whose first member is ``toc.dat``.
"""

from __future__ import annotations

import re
import subprocess
import tarfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from pgvault.errors import ArchiveError, ToolError
from pgvault.postgres import runner
from pgvault.postgres.commands import pg_restore_command
from pgvault.postgres.runner import Child

# Multi-word TOC entry types, longest first (pg_dump's pg_backup_archiver.c descriptions).
_TYPES = sorted(
    (
        "TABLE DATA",
        "SEQUENCE SET",
        "SEQUENCE OWNED BY",
        "MATERIALIZED VIEW DATA",
        "MATERIALIZED VIEW",
        "FK CONSTRAINT",
        "CHECK CONSTRAINT",
        "DEFAULT ACL",
        "EVENT TRIGGER",
        "FOREIGN TABLE",
        "FOREIGN DATA WRAPPER",
        "FOREIGN SERVER",
        "INDEX ATTACH",
        "LARGE OBJECT",
        "BLOBS",
        "BLOB",
        "BLOB METADATA",
        "TEXT SEARCH CONFIGURATION",
        "TEXT SEARCH DICTIONARY",
        "TEXT SEARCH PARSER",
        "TEXT SEARCH TEMPLATE",
        "ACCESS METHOD",
        "OPERATOR CLASS",
        "OPERATOR FAMILY",
        "PUBLICATION TABLE",
        "PUBLICATION TABLES IN SCHEMA",
        "ROW SECURITY",
        "STATISTICS DATA",
        "TABLE ATTACH",
        "USER MAPPING",
        "PROCEDURAL LANGUAGE",
        "SHELL TYPE",
        "ENCODING",
        "STDSTRINGS",
        "SEARCHPATH",
        "DATABASE PROPERTIES",
    ),
    key=len,
    reverse=True,
)
_TOC_LINE = re.compile(r"^\d+;\s+\d+\s+\d+\s+(.*)$")


@dataclass(frozen=True)
class TocEntry:
    """One line of ``pg_restore --list``: its type and the rest (schema, name, owner)."""

    kind: str
    schema: str
    name: str


def parse_toc(text: str) -> list[TocEntry]:
    """Parse ``pg_restore --list`` output; comment lines (``;``) are skipped."""
    entries = []
    for line in text.splitlines():
        match = _TOC_LINE.match(line)
        if match is None:
            continue
        rest = match.group(1)
        kind = next((t for t in _TYPES if rest.startswith(t + " ")), rest.split(" ", 1)[0])
        fields = rest[len(kind) :].strip().split(" ")
        schema = fields[0] if fields else "-"
        name = " ".join(fields[1:-1]) if len(fields) > 2 else (fields[1] if len(fields) > 1 else "")
        entries.append(TocEntry(kind=kind, schema=schema, name=name))
    return entries


def object_counts(entries: list[TocEntry]) -> dict[str, int]:
    """Count of TOC entries by type, e.g. ``{"TABLE": 21, "INDEX": 56, ...}``."""
    return dict(sorted(Counter(e.kind for e in entries).items()))


def data_tables(entries: list[TocEntry]) -> list[tuple[str, str]]:
    """``(schema, table)`` of every TABLE DATA entry, in archive order."""
    return [(e.schema, e.name) for e in entries if e.kind == "TABLE DATA"]


def toc_from_path(pg_restore: Path, archive: Path) -> list[TocEntry]:
    """The TOC of a custom archive file or an unpacked directory archive.

    Raises:
        ArchiveError: pg_restore cannot read it.
    """
    try:
        text = runner.run(pg_restore_command(pg_restore, archive=archive, list_only=True))
    except ToolError as exc:
        raise ArchiveError(f"pg_restore cannot read this archive: {exc}") from exc
    return parse_toc(text)


def toc_from_stream(pg_restore: Path, stream: IO[bytes]) -> list[TocEntry]:
    """The TOC of a custom archive arriving as a stream (read only as far as needed).

    Raises:
        ArchiveError: pg_restore cannot read it.
    """
    argv = pg_restore_command(pg_restore, list_only=True)
    with Child(argv, stdin=subprocess.PIPE) as child:
        try:
            while chunk := stream.read(runner.CHUNK_SIZE):
                child.stdin.write(chunk)
            child.stdin.close()
        except BrokenPipeError:
            pass  # pg_restore --list stops reading once it has the TOC
        out = b"".join(child.chunks())
        if child.wait() != 0:
            raise ArchiveError(f"pg_restore cannot read this archive: {child.message()}")
    return parse_toc(out.decode("utf-8", "replace"))


def toc_from_tar(pg_restore: Path, stream: IO[bytes], workdir: Path) -> list[TocEntry]:
    """The TOC of a stored directory archive: unpack only ``toc.dat`` and list it.

    Raises:
        ArchiveError: the tar has no ``toc.dat``.
    """
    try:
        with tarfile.open(fileobj=stream, mode="r|") as tar:
            for member in tar:
                if member.name == "toc.dat" and member.isfile():
                    tar.extract(member, workdir, filter="data")
                    return toc_from_path(pg_restore, workdir)
    except tarfile.TarError as exc:
        raise ArchiveError(f"the directory archive (tar) is corrupt or cut short: {exc}") from exc
    raise ArchiveError("this tar holds no toc.dat: not a pg_dump directory archive")


class CopyScanner:
    """Finds the tables of a plain SQL dump from its ``COPY schema.table (...) FROM stdin;``
    lines, fed chunk by chunk as the dump streams past (no second read)."""

    _COPY = re.compile(rb'^COPY ((?:"(?:[^"]|"")+"|[^ .(]+)\.(?:"(?:[^"]|"")+"|[^ (]+))')

    def __init__(self) -> None:
        self.tables: list[tuple[str, str]] = []
        self._carry = b""

    def feed(self, chunk: bytes) -> None:
        """Scan one chunk (lines may straddle chunks)."""
        data = self._carry + chunk
        start = 0
        while True:
            hit = data.find(b"\nCOPY ", start)
            if hit < 0:
                break
            end = data.find(b"\n", hit + 1)
            if end < 0:
                self._carry = data[hit:]
                return
            self._take(data[hit + 1 : end])
            start = end
        self._carry = data[-200:]

    def _take(self, line: bytes) -> None:
        match = self._COPY.match(line)
        if match is None:
            return
        qualified = match.group(1).decode("utf-8", "replace")
        schema, _, table = _split_qualified(qualified)
        if (schema, table) not in self.tables:
            self.tables.append((schema, table))


def _split_qualified(text: str) -> tuple[str, str, str]:
    parts: list[str] = []
    current = ""
    quoted = False
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == '"':
            if quoted and i + 1 < len(text) and text[i + 1] == '"':
                current += '"'
                i += 1
            else:
                quoted = not quoted
        elif ch == "." and not quoted:
            parts.append(current)
            current = ""
        else:
            current += ch
        i += 1
    parts.append(current)
    return parts[0], ".", parts[-1]


def toc_of_stored(
    pg_restore: Path,
    stream: IO[bytes],
    kind: str,
    workdir: Path,
    local_file: Path | None = None,
) -> list[TocEntry]:
    """The TOC of a stored dump, reading a local file directly when there is one.

    Args:
        stream: the dump with its compression/encryption layers removed.
        kind: ``custom`` or ``tar`` (plain dumps have no TOC: returns []).
        local_file: a seekable custom archive file, used instead of the stream.
    """
    if kind == "plain":
        return []
    if kind == "tar":
        return toc_from_tar(pg_restore, stream, workdir)
    if local_file is not None:
        return toc_from_path(pg_restore, local_file)
    return toc_from_stream(pg_restore, stream)


class TocTap:
    """Feeds a custom archive, as it streams past, to ``pg_restore --list``.

    pg_restore reads the header and TOC, prints the list and exits; from then on the tap
    costs nothing. This lists the tables of what pg_dump wrote without reading it back from
    storage (where it may be encrypted for a key pgvault does not hold).
    """

    def __init__(self, pg_restore: Path, workdir: Path) -> None:
        self._listing = open(workdir / "toc.list", "w+b")  # noqa: SIM115
        argv = pg_restore_command(pg_restore, list_only=True)
        self._child = Child(argv, stdin=subprocess.PIPE, stdout=self._listing)
        self._feeding = True

    def feed(self, chunk: bytes) -> None:
        """Pass a chunk on, until pg_restore has read what it needs."""
        if not self._feeding:
            return
        try:
            self._child.stdin.write(chunk)
        except BrokenPipeError:
            self._feeding = False

    def entries(self) -> list[TocEntry]:
        """The parsed TOC, once the whole stream was fed.

        Raises:
            ArchiveError: pg_restore could not read what pg_dump wrote.
        """
        if self._feeding:
            try:
                self._child.stdin.close()
            except BrokenPipeError:
                pass
            self._feeding = False
        if self._child.wait() != 0:
            raise ArchiveError(f"pg_restore cannot read the archive: {self._child.message()}")
        self._listing.seek(0)
        return parse_toc(self._listing.read().decode("utf-8", "replace"))

    def close(self) -> None:
        """Stop pg_restore if still running and release the listing file."""
        self._child.kill()
        self._child.wait()
        self._listing.close()
