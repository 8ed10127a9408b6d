"""Is a dump whole? Checked as its bytes stream past, before it is recorded or restored.

A dump cut short can look fine to a quick look (``pg_restore --list`` reads only the head),
so an upload, a ``restore --file`` and ``verify`` read it to its end:

* custom archive: the header and the TOC parse (pg_dump's ``pg_backup_archiver.c``
  ``ReadHead``/``ReadToc``, ``pg_backup_custom.c``), then the data blocks follow one by
  one, each a ``BLK_DATA``/``BLK_BLOBS`` block of a TOC entry that has data, its chunks
  ending with a zero length, at the offset the TOC gives when it gives one; after the last
  one the file ends, and every TOC entry with data had its block;
* directory archive (stored as a tar): ``toc.dat`` is a whole TOC (parsed the same way),
  and every data file it names (``<dumpId>.dat[.gz|.zst|.lz4]``, ``blobs_<id>.toc``) is in
  the tar;
* plain SQL: pg_dump's closing ``-- PostgreSQL database dump complete`` line, and no psql
  meta-command (:mod:`pgvault.dumps.psqlguard`).

:func:`check_dump` reads a stream (layers already removed); :class:`StreamCheck` runs it
in a thread on chunks pushed to it, so an upload is checked while it is stored.
"""

from __future__ import annotations

import io
import queue
import re
import tarfile
import threading
from dataclasses import dataclass, field
from typing import IO

from pgvault.dumps import psqlguard
from pgvault.dumps.layers import DecryptHook, QueueReader, open_layers
from pgvault.errors import ArchiveError

BLK_DATA = 1
BLK_BLOBS = 3
K_OFFSET_POS_NOT_SET = 1
K_OFFSET_POS_SET = 2
K_OFFSET_NO_DATA = 3
PLAIN_TRAILER = b"PostgreSQL database dump complete"
_BLOBS_TOC = re.compile(r"^blobs(?:_\d+)?\.toc$")
_CHUNK = 1024 * 1024


class CutShort(ArchiveError):
    """The dump ends before it is whole."""


@dataclass
class Whole:
    """What a whole dump holds: its kind, the TOC entries' types (custom and directory
    archives) and, for plain SQL, its number of lines."""

    kind: str
    toc_types: list[str] = field(default_factory=list)
    lines: int = 0

    def object_counts(self) -> dict[str, int]:
        """Count of TOC entries by type (as ``pg_restore --list`` shows them)."""
        counts: dict[str, int] = {}
        for kind in self.toc_types:
            counts[kind] = counts.get(kind, 0) + 1
        return dict(sorted(counts.items()))


class _Reader:
    """Exact reads from a stream, counting the offset; EOF mid-field is :class:`CutShort`."""

    def __init__(self, stream: IO[bytes], what: str) -> None:
        self._stream = stream
        self._what = what
        self.offset = 0
        self.int_size = 4
        self.off_size = 8
        self.version = (1, 0, 0)

    def take(self, size: int) -> bytes:
        parts = []
        left = size
        while left > 0:
            data = self._stream.read(min(left, _CHUNK))
            if not data:
                raise CutShort(
                    f"this {self._what} is cut short (it ends at byte {self.offset + size - left}"
                    " inside its data): nothing changed"
                )
            parts.append(data)
            left -= len(data)
        self.offset += size
        return b"".join(parts)

    def skip(self, size: int) -> None:
        while size > 0:
            step = min(size, _CHUNK)
            self.take(step)
            size -= step

    def byte(self) -> int:
        return self.take(1)[0]

    def maybe_byte(self) -> int | None:
        """The next byte, or None at a clean end of the stream."""
        data = self._stream.read(1)
        if not data:
            return None
        self.offset += 1
        return data[0]

    def int_(self) -> int:
        sign = self.byte() if self.version > (1, 0, 0) else 0
        value = int.from_bytes(self.take(self.int_size), "little")
        return -value if sign else value

    def str_(self) -> bytes | None:
        length = self.int_()
        if length < 0:
            return None
        if length > 256 * 1024 * 1024:
            raise ArchiveError(f"this {self._what} is corrupt (a TOC string of {length} bytes)")
        return self.take(length)

    def offset_(self) -> tuple[int, int]:
        flag = self.byte()
        if flag not in (K_OFFSET_POS_NOT_SET, K_OFFSET_POS_SET, K_OFFSET_NO_DATA):
            raise ArchiveError(f"this {self._what} is corrupt (data offset flag {flag})")
        return flag, int.from_bytes(self.take(self.off_size), "little")


@dataclass
class _TocEntry:
    dump_id: int
    desc: str
    data_state: int = K_OFFSET_NO_DATA
    data_pos: int = 0
    filename: str | None = None  # directory format: the entry's data file


def _read_head(reader: _Reader, expected_format: tuple[int, ...]) -> None:
    """``ReadHead``: magic, version, int/offset sizes, format, compression, date, names."""
    if reader.take(5) != b"PGDMP":
        raise ArchiveError("this is not a pg_dump archive (no PGDMP magic)")
    vmaj, vmin = reader.byte(), reader.byte()
    vrev = reader.byte() if (vmaj, vmin) > (1, 0) else 0
    reader.version = (vmaj, vmin, vrev)
    if reader.version < (1, 7, 0) or vmaj > 1:
        raise ArchiveError(f"archive version {vmaj}.{vmin} is not one pgvault can check")
    reader.int_size = reader.byte()
    reader.off_size = reader.byte()
    if not (1 <= reader.int_size <= 8 and 1 <= reader.off_size <= 16):
        raise ArchiveError("this archive's header is corrupt (integer sizes)")
    if reader.byte() not in expected_format:
        raise ArchiveError("this archive is not in the format its container says")
    if reader.version >= (1, 15, 0):
        reader.byte()  # compression algorithm
    else:
        reader.int_()  # compression level
    for _ in range(7):  # creation date: sec, min, hour, mday, mon, year, isdst
        reader.int_()
    reader.str_()  # database name
    reader.str_()  # server version
    reader.str_()  # pg_dump version


def _read_toc(reader: _Reader, custom: bool, count: int | None = None) -> list[_TocEntry]:
    """``ReadToc``: every entry's fields; for the custom format its data offset too
    (``count``: the entry count, when its integer was read already)."""
    count = reader.int_() if count is None else count
    if not 0 <= count <= 10_000_000:
        raise ArchiveError(f"this archive's TOC is corrupt ({count} entries)")
    version = reader.version
    entries = []
    for _ in range(count):
        dump_id = reader.int_()
        reader.int_()  # hadDumper
        reader.str_()  # table oid
        reader.str_()  # oid
        reader.str_()  # tag
        desc = (reader.str_() or b"").decode("utf-8", "replace")
        reader.int_()  # section
        for _field in ("defn", "dropStmt", "copyStmt", "namespace", "tablespace"):
            reader.str_()
        if version >= (1, 14, 0):
            reader.str_()  # tableam
        if version >= (1, 16, 0):
            reader.int_()  # relkind
        reader.str_()  # owner
        reader.str_()  # "false" (WITH OIDS)
        while reader.str_() is not None:  # dependencies, up to a NULL string
            pass
        entry = _TocEntry(dump_id, desc)
        if custom:
            entry.data_state, entry.data_pos = reader.offset_()
        else:
            entry.filename = (reader.str_() or b"").decode("utf-8", "replace") or None
        entries.append(entry)
    return entries


def check_custom(stream: IO[bytes]) -> Whole:
    """Check a custom archive to its last byte (see the module doc).

    Raises:
        CutShort: it ends before every data block the TOC promises.
        ArchiveError: the header, the TOC or a block is corrupt.
    """
    reader = _Reader(stream, "custom archive")
    _read_head(reader, expected_format=(1,))
    entries = _read_toc(reader, custom=True)
    wanted = {e.dump_id: e for e in entries if e.data_state != K_OFFSET_NO_DATA}
    seen: dict[int, int] = {}
    while True:
        start = reader.offset
        kind = reader.maybe_byte()
        if kind is None:
            break
        if kind == 0 and set(seen) == set(wanted):
            _trailing_toc(reader, entries, seen)
            break
        if kind not in (BLK_DATA, BLK_BLOBS):
            raise ArchiveError(f"this custom archive is corrupt (block type {kind} at {start})")
        dump_id = reader.int_()
        entry = wanted.get(dump_id)
        if entry is None or dump_id in seen:
            raise ArchiveError(f"this custom archive is corrupt (unexpected block {dump_id})")
        if entry.data_state == K_OFFSET_POS_SET and entry.data_pos != start:
            raise ArchiveError(
                f"this custom archive is corrupt (block {dump_id} at {start}, its TOC says "
                f"{entry.data_pos})"
            )
        seen[dump_id] = start
        if kind == BLK_DATA:
            _skip_chunks(reader)
        else:
            while reader.int_() != 0:  # large objects: oid, chunks, ..., oid 0
                _skip_chunks(reader)
    missing = sorted(set(wanted) - set(seen))
    if missing:
        raise CutShort(
            f"this custom archive is cut short: {len(missing)} of {len(wanted)} data blocks "
            "are missing after its last byte: nothing changed"
        )
    return Whole("custom", [e.desc for e in entries])


def _trailing_toc(reader: _Reader, entries: list[_TocEntry], starts: dict[int, int]) -> None:
    """The TOC pg_dump >= 18 writes again after the data of a non-seekable archive, this
    time with every block's offset: it must list the same entries, at the offsets seen."""
    count = int.from_bytes(reader.take(reader.int_size), "little")  # its sign byte was 0
    if count != len(entries):
        raise ArchiveError("this custom archive is corrupt (its closing TOC differs)")
    for entry in _read_toc(reader, custom=True, count=count):
        if entry.data_state == K_OFFSET_POS_SET and starts.get(entry.dump_id) != entry.data_pos:
            raise ArchiveError(
                f"this custom archive is corrupt (block {entry.dump_id} is not where its "
                "closing TOC says)"
            )


def _skip_chunks(reader: _Reader) -> None:
    while True:
        length = reader.int_()
        if length == 0:
            return
        if length < 0:
            raise ArchiveError("this custom archive is corrupt (a negative chunk length)")
        reader.skip(length)


def check_tar(stream: IO[bytes]) -> Whole:
    """Check a directory archive stored as a tar: a whole ``toc.dat``, every data file it
    names, and every large-object file its blobs TOC files name.

    Raises:
        CutShort: the tar ends early, or files the TOC names are missing.
        ArchiveError: no ``toc.dat``, or a corrupt one.
    """
    entries: list[_TocEntry] | None = None
    names: set[str] = set()
    named: set[str] = set()
    try:
        with tarfile.open(fileobj=stream, mode="r|") as tar:
            for member in tar:
                names.add(member.name)
                if not member.isfile():
                    continue
                if member.name == "toc.dat":
                    handle = tar.extractfile(member)
                    assert handle is not None
                    reader = _Reader(handle, "directory archive's toc.dat")
                    _read_head(reader, expected_format=(3, 5))
                    entries = _read_toc(reader, custom=False)
                elif _BLOBS_TOC.match(member.name) and member.size < 64 * 1024 * 1024:
                    handle = tar.extractfile(member)
                    assert handle is not None
                    for line in handle.read().decode("utf-8", "replace").splitlines():
                        parts = line.split()
                        if len(parts) == 2:
                            named.add(parts[1])
    except tarfile.TarError as exc:
        raise CutShort(f"the directory archive (tar) is corrupt or cut short: {exc}") from exc
    if entries is None:
        raise ArchiveError("this tar holds no toc.dat: not a pg_dump directory archive")
    named |= {e.filename for e in entries if e.filename}
    missing = [name for name in sorted(named) if not _present(name, names)]
    if missing:
        raise CutShort(
            f"the directory archive is cut short: {len(missing)} of the files its TOC names "
            f"are missing (first: {missing[0]}): nothing changed"
        )
    return Whole("tar", [e.desc for e in entries])


def _present(name: str, names: set[str]) -> bool:
    """A data file is there as named or with pg_dump's compression suffix."""
    return any(name + suffix in names for suffix in ("", ".gz", ".zst", ".lz4"))


def check_plain(stream: IO[bytes]) -> Whole:
    """Check plain SQL: no psql meta-command, and pg_dump's closing trailer.

    Raises:
        MetaCommandRefused: a psql meta-command (its line in the message).
        CutShort: the ``dump complete`` trailer is missing.
    """
    guard = psqlguard.PsqlGuard(_Tail(), None)
    tail = b""
    while chunk := stream.read(_CHUNK):
        guard.write(chunk)
        tail = (tail + chunk)[-4096:]
    guard.close()
    if PLAIN_TRAILER not in tail:
        raise CutShort(
            "this plain dump is cut short (pg_dump's 'dump complete' trailer is missing): "
            "nothing changed"
        )
    return Whole("plain", lines=guard.lines)


class _Tail:
    def write(self, data: bytes, /) -> int:
        return len(data)


def check_dump(stream: IO[bytes], kind: str) -> Whole:
    """Check a dump stream of ``kind`` (``custom``, ``tar`` or ``plain``), reading it to
    its end.

    Raises:
        CutShort, ArchiveError, MetaCommandRefused: as the checks of each kind.
    """
    if kind == "custom":
        found = check_custom(stream)
    elif kind == "tar":
        found = check_tar(stream)
        while stream.read(_CHUNK):
            pass  # tar padding after the end blocks
    else:
        return check_plain(stream)
    if stream.read(1):
        raise ArchiveError(f"this {kind} archive has bytes after its end: not a pg_dump file")
    return found


def check_opened(raw: IO[bytes], decrypt: DecryptHook | None = None) -> Whole:
    """:func:`check_dump` of a stored or uploaded stream, layers (age, zstd, gzip) removed.

    Raises:
        ArchiveError: not a dump, a corrupt layer, or as :func:`check_dump`.
    """
    opened = open_layers(raw, decrypt)
    with opened.stream as stream:
        return check_dump(stream, opened.kind)


_END = b""


class StreamCheck:
    """:func:`check_opened` of bytes pushed with :meth:`feed` (an upload on its way to
    storage), in a thread; :meth:`result` waits for the verdict."""

    def __init__(self, decrypt: DecryptHook | None = None) -> None:
        self._chunks: queue.Queue[bytes] = queue.Queue(maxsize=16)
        self._verdict: Whole | None = None
        self._error: BaseException | None = None
        self._done = threading.Event()
        stream = io.BufferedReader(QueueReader(self._chunks), _CHUNK)

        def work() -> None:
            try:
                self._verdict = check_opened(stream, decrypt)
            except BaseException as exc:  # reported by result()
                self._error = exc
            finally:
                self._done.set()
                while True:  # let a producer blocked on a full queue go on
                    try:
                        self._chunks.get_nowait()
                    except queue.Empty:
                        break

        self._thread = threading.Thread(target=work, name="dump-check", daemon=True)
        self._thread.start()

    def feed(self, chunk: bytes) -> None:
        """Pass the next chunk of the stream (never blocks once a verdict is in)."""
        while not self._done.is_set():
            try:
                self._chunks.put(chunk, timeout=0.1)
                return
            except queue.Full:
                continue

    def result(self) -> Whole:
        """End the stream and wait for the check.

        Raises:
            CutShort, ArchiveError, MetaCommandRefused: the dump is not whole.
        """
        self.feed(_END)
        self._thread.join()
        if self._error is not None:
            raise self._error
        assert self._verdict is not None
        return self._verdict
