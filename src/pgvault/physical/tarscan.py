"""Reading pg_basebackup's tar stream as it passes (push style): picking members out of it
(:class:`TarTap`) and extracting it into a directory (:class:`TarExtractor`).

pg_basebackup's ``-Ft -D -`` stream is a ustar archive (POSIX.1-1988 headers, 512-byte
blocks, sizes in octal or, past 8 GiB, base-256) whose last member is ``backup_manifest``.
:class:`TarTap` is fed the chunks on their way to storage and keeps the bytes of the few
members asked for (the manifest, ``backup_label``), so nothing is read twice.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import BinaryIO

from pgvault.errors import ArchiveError

BLOCK = 512
MAX_KEPT = 256 * 1024 * 1024  # bytes; a manifest of millions of files still fits


def _number(field: bytes) -> int:
    """A tar header number: octal text, or base-256 when the first byte has bit 7 set."""
    if field and field[0] & 0x80:
        value = field[0] & 0x7F
        for byte in field[1:]:
            value = (value << 8) | byte
        return value
    text = field.split(b"\0", 1)[0].strip()
    return int(text, 8) if text else 0


class TarTap:
    """Collects the contents of the members named in ``wanted`` (``"backup_manifest"``).

    Raises:
        ArchiveError: a header is not a tar header, or a kept member is absurdly large.
    """

    def __init__(self, wanted: Iterable[str]) -> None:
        self.wanted = set(wanted)
        self.found: dict[str, bytes] = {}
        self.members = 0
        self.ended = False
        self._header = bytearray()
        self._skip = 0  # bytes of data (and padding) still to pass over
        self._keep_name: str | None = None
        self._keep_left = 0
        self._kept = bytearray()

    def feed(self, chunk: bytes) -> None:
        """Scan the next bytes of the stream."""
        view = memoryview(chunk)
        while view and not self.ended:
            if self._keep_left:
                take = min(self._keep_left, len(view))
                self._kept += view[:take]
                self._keep_left -= take
                self._skip -= take
                view = view[take:]
                if not self._keep_left and self._keep_name is not None:
                    self.found[self._keep_name] = bytes(self._kept)
                    self._keep_name = None
                    self._kept = bytearray()
                continue
            if self._skip:
                take = min(self._skip, len(view))
                self._skip -= take
                view = view[take:]
                continue
            take = min(BLOCK - len(self._header), len(view))
            self._header += view[:take]
            view = view[take:]
            if len(self._header) == BLOCK:
                self._parse(bytes(self._header))
                self._header.clear()

    def _parse(self, header: bytes) -> None:
        if header == b"\0" * BLOCK:
            self.ended = True
            return
        if header[257:262] != b"ustar":
            raise ArchiveError("pg_basebackup's output is not a tar archive")
        name = header[:100].split(b"\0", 1)[0].decode("utf-8", "replace")
        prefix = header[345:500].split(b"\0", 1)[0].decode("utf-8", "replace")
        if prefix:
            name = f"{prefix}/{name}"
        size = _number(header[124:136])
        self.members += 1
        self._skip = (size + BLOCK - 1) // BLOCK * BLOCK
        if name in self.wanted and header[156:157] in (b"0", b"\0"):
            if size > MAX_KEPT:
                raise ArchiveError(f"tar member {name} is {size} bytes: too large to keep")
            self._keep_name = name
            self._keep_left = size
            if size == 0:
                self.found[name] = b""
                self._keep_name = None


class TarExtractor:
    """Writes a pg_basebackup tar stream into a directory as it passes (push style).

    Only what pg_basebackup writes is accepted: regular files and directories with
    relative names (no ``..``, no absolute path, no empty segment); links, devices and
    extended headers are refused, so a stored object can never write outside ``root`` or
    through a link (what ``tarfile``'s ``data`` filter guards against, PEP 706). Modes keep
    the owner bits only; file data goes from the decompressed chunks straight to ``write``.
    Each finished file is handed to ``finish`` (default: closed).

    Raises:
        ArchiveError: a member is of a refused type or name, or the stream ends early.
    """

    def __init__(self, root: Path, finish: Callable[[BinaryIO], None] | None = None) -> None:
        self.root = root
        self._finish = finish or (lambda handle: handle.close())
        self.files = 0
        self.ended = False
        self._header = bytearray()
        self._out: BinaryIO | None = None
        self._left = 0  # data bytes of the current member still to come
        self._pad = 0  # padding after them
        self._name = ""

    def feed(self, chunk: bytes) -> None:
        """Extract the next bytes of the stream."""
        view = memoryview(chunk)
        while view and not self.ended:
            if self._left:
                take = min(self._left, len(view))
                if self._out is not None:
                    self._out.write(view[:take])
                self._left -= take
                view = view[take:]
                if not self._left:
                    self._close_member()
                continue
            if self._pad:
                take = min(self._pad, len(view))
                self._pad -= take
                view = view[take:]
                continue
            take = min(BLOCK - len(self._header), len(view))
            self._header += view[:take]
            view = view[take:]
            if len(self._header) == BLOCK:
                self._member(bytes(self._header))
                self._header.clear()

    def _target(self, name: str) -> Path:
        parts = [p for p in name.rstrip("/").split("/") if p != "."]  # "./pg_wal/" is fine
        if not name or name.startswith("/") or any(p in ("", "..") for p in parts):
            raise ArchiveError(f"base backup holds a member with an unsafe name: {name!r}")
        return self.root.joinpath(*parts)

    def _member(self, header: bytes) -> None:
        if header == b"\0" * BLOCK:
            self.ended = True
            return
        if header[257:262] != b"ustar":
            raise ArchiveError("the base backup is not a tar archive pgvault can read")
        name = header[:100].split(b"\0", 1)[0].decode("utf-8", "strict")
        kind = header[156:157]
        mode = _number(header[100:108]) & 0o700
        size = _number(header[124:136])
        path = self._target(name)
        if kind == b"5":
            path.mkdir(mode=mode or 0o700, exist_ok=True)
            return
        if kind not in (b"0", b"\0"):
            raise ArchiveError(f"base backup member {name!r} is of a refused tar type {kind!r}")
        if path.parent != self.root and not path.parent.is_dir():
            raise ArchiveError(f"base backup member {name!r} comes before its directory")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode or 0o600)
        self._out = os.fdopen(fd, "wb", buffering=0)
        self._name = name
        self._left = size
        self._pad = (BLOCK - size % BLOCK) % BLOCK
        self.files += 1
        if size == 0:
            self._close_member()

    def _close_member(self) -> None:
        if self._out is not None:
            self._finish(self._out)  # closes it (after an fsync, in unpack's syncer)
            self._out = None

    def close(self) -> None:
        """Check the archive ended properly.

        Raises:
            ArchiveError: it was cut short.
        """
        self._close_member()
        if not self.ended:
            raise ArchiveError("the base backup's tar stream is cut short")
