"""Picking members out of a tar stream as it passes (push style, nothing buffered but them).

pg_basebackup's ``-Ft -D -`` stream is a ustar archive (POSIX.1-1988 headers, 512-byte
blocks, sizes in octal or, past 8 GiB, base-256) whose last member is ``backup_manifest``.
:class:`TarTap` is fed the chunks on their way to storage and keeps the bytes of the few
members asked for (the manifest, ``backup_label``), so nothing is read twice.
"""

from __future__ import annotations

from collections.abc import Iterable

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
