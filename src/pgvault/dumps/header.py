"""Which PostgreSQL wrote a dump, read from its first bytes (no client tool needed).

A custom archive (and a directory archive's ``toc.dat``) starts with pg_dump's header
(``WriteHead`` in pg_dump's ``pg_backup_archiver.c``)::

    "PGDMP" vmaj vmin vrev intSize offSize format
    [compression: one byte (archive >= 1.15) | one int (older)]
    7 ints (creation time) ; str dbname ; str server version ; str pg_dump version

An int is a sign byte then ``intSize`` bytes, least significant first; a str is an int
length then that many bytes. A plain SQL dump says ``-- Dumped by pg_dump version 18.6`` in
its opening comment. A restore uses this to pick a pg_restore that can read the archive and
to know whether the version fallback may be needed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_MAGIC = b"PGDMP"
_PLAIN_BY = re.compile(rb"-- Dumped by pg_dump version (\d+)(?:\.(\d+))?")
_PLAIN_FROM = re.compile(rb"-- Dumped from database version (\d+)(?:\.(\d+))?")
TAR_BLOCK = 512


@dataclass(frozen=True)
class DumpVersions:
    """Versions a dump names: the pg_dump that wrote it, the server it was taken from
    (``"18.6"``, ``"15.18"``; None when the dump does not say)."""

    pg_dump: str | None
    server: str | None

    @property
    def pg_dump_major(self) -> int | None:
        """The major version of the pg_dump that wrote the dump, if known."""
        return _major(self.pg_dump)


def _major(version: str | None) -> int | None:
    if not version:
        return None
    match = re.match(r"(\d+)", version)
    return int(match.group(1)) if match else None


class _Reader:
    def __init__(self, data: bytes, pos: int) -> None:
        self.data = data
        self.pos = pos
        self.int_size = 4

    def byte(self) -> int:
        if self.pos >= len(self.data):
            raise ValueError("header cut short")
        value = self.data[self.pos]
        self.pos += 1
        return value

    def integer(self) -> int:
        negative = self.byte()
        raw = self.data[self.pos : self.pos + self.int_size]
        if len(raw) < self.int_size:
            raise ValueError("header cut short")
        self.pos += self.int_size
        value = int.from_bytes(raw, "little")
        return -value if negative else value

    def string(self) -> str | None:
        length = self.integer()
        if length < 0:
            return None
        raw = self.data[self.pos : self.pos + length]
        if len(raw) < length:
            raise ValueError("header cut short")
        self.pos += length
        return raw.decode("utf-8", "replace")


def archive_versions(head: bytes, offset: int = 0) -> DumpVersions | None:
    """The versions in a custom archive header starting at ``offset`` of ``head`` (the
    first KiB is plenty); None when it is not such a header or is cut short."""
    if head[offset : offset + 5] != _MAGIC:
        return None
    reader = _Reader(head, offset + 5)
    try:
        vmaj, vmin = reader.byte(), reader.byte()
        reader.byte()  # revision
        reader.int_size = reader.byte()
        reader.byte()  # offSize
        reader.byte()  # format
        if (vmaj, vmin) >= (1, 15):
            reader.byte()  # compression algorithm
        else:
            reader.integer()  # compression level
        for _ in range(7):
            reader.integer()  # creation time
        reader.string()  # database name
        server = reader.string()
        pg_dump = reader.string()
    except ValueError:
        return None
    return DumpVersions(pg_dump=pg_dump, server=server)


def dump_versions(head: bytes, kind: str) -> DumpVersions | None:
    """The versions a dump of ``kind`` (``custom``, ``tar`` for a stored directory archive
    whose first member is ``toc.dat``, ``plain``) names in its first bytes."""
    if kind == "custom":
        return archive_versions(head)
    if kind == "tar":
        return archive_versions(head, TAR_BLOCK)
    if kind == "plain":
        by, source = _PLAIN_BY.search(head[:8192]), _PLAIN_FROM.search(head[:8192])
        if by is None:
            return None
        return DumpVersions(
            pg_dump=_join(by.group(1), by.group(2)),
            server=_join(source.group(1), source.group(2)) if source else None,
        )
    return None


def _join(major: bytes, minor: bytes | None) -> str:
    return major.decode() + ("." + minor.decode() if minor else "")
