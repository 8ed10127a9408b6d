"""The backup stream: pg_dump's output through [compressor] -> [age] -> sha256 -> storage.

::

    pg_dump stdout --1 MiB chunks--> DumpLister (TOC tap / COPY scanner)
                                 \\-> BackupStream: [zstd|gzip] -> [age] -> sha256+size -> writer

The writer is committed only after pg_dump exited 0; any failure aborts it, so no partial
object is ever visible under the backup's key. A directory-format dump (pg_dump needs a real
directory) is streamed afterwards as one tar with ``toc.dat`` first.
"""

from __future__ import annotations

import hashlib
import io
import logging
import tarfile
import threading
from collections.abc import Sequence
from pathlib import Path

from pgvault.backups.estimate import BackupEstimate
from pgvault.backups.plan import CompressionPlan
from pgvault.config.settings import Settings
from pgvault.dumps import toc
from pgvault.dumps.encryption import Encryptor, parse_recipients
from pgvault.dumps.layers import HashingWriter, Sink, Stage, compressor
from pgvault.errors import Cancelled, PgvaultError
from pgvault.postgres import runner, tools
from pgvault.postgres.commands import pg_dumpall_globals_command
from pgvault.postgres.conninfo import ConnInfo
from pgvault.postgres.runner import Child
from pgvault.progress import ProgressEvent, Report
from pgvault.storage import Storage

log = logging.getLogger(__name__)

Progress = Report
"""Receives :class:`~pgvault.progress.ProgressEvent` s: ``dumping`` with the bytes stored so
far and the estimated total (see :mod:`pgvault.backups.estimate`), then later phases."""


class _Tee:
    """Writes every chunk to the storage writer and to a second sink (a live download)."""

    def __init__(self, first: Sink, second: Sink) -> None:
        self._first = first
        self._second = second

    def write(self, data: bytes, /) -> int:
        self._first.write(data)
        self._second.write(data)
        return len(data)


class BackupStream:
    """The write chain of one backup: [compressor] -> [age encryptor] -> sha256/size -> the
    storage writer of ``key`` (and ``tee``, which gets the same stored bytes as they are
    written: ``GET /databases/{name}/dump?keep=true``). ``write`` raises
    :class:`Cancelled` once ``cancel`` is set."""

    def __init__(
        self,
        store: Storage,
        key: str,
        compression: CompressionPlan,
        level: int | None,
        recipients: Sequence[str],
        progress: Progress | None,
        cancel: threading.Event | None,
        tee: Sink | None = None,
        estimate: BackupEstimate | None = None,
    ) -> None:
        self.writer = store.open_write(key)
        self._hashing = HashingWriter(_Tee(self.writer, tee) if tee is not None else self.writer)
        self._encryptor = (
            Encryptor(self._hashing, parse_recipients(recipients)) if recipients else None
        )
        self._top: Stage = compressor(compression.stream, level, self._encryptor or self._hashing)
        self._progress = progress
        self._cancel = cancel
        self._estimate = estimate or BackupEstimate()
        self._fed = 0

    def write(self, data: bytes, /) -> int:
        """Feed ``data`` (bytes from pg_dump) into the chain; returns ``len(data)``."""
        if self._cancel is not None and self._cancel.is_set():
            raise Cancelled("backup cancelled")
        self._top.write(data)
        self._fed += len(data)
        if self._progress is not None:
            stored = self._hashing.size
            self._progress(ProgressEvent("dumping", stored, self._estimate.total(stored)))
        return len(data)

    def commit(self) -> None:
        """Flush every layer and commit the stored object."""
        self._top.close()
        if self._encryptor is not None:
            self._encryptor.close()
        self.writer.commit()

    @property
    def size(self) -> int:
        """Bytes stored so far (after compression and encryption)."""
        return self._hashing.size

    @property
    def sha256(self) -> str:
        """Hex sha256 of the stored bytes."""
        return self._hashing.sha256


class DumpLister:
    """Lists what a streamed dump holds as it passes: a TOC tap for custom archives, a COPY
    scanner for plain SQL."""

    def __init__(self, dump_format: str, pg_restore: Path, workdir: Path) -> None:
        self._scanner = toc.CopyScanner() if dump_format == "plain" else None
        self._tap = toc.TocTap(pg_restore, workdir) if self._scanner is None else None

    def feed(self, chunk: bytes) -> None:
        """Look at the next chunk of the dump."""
        if self._scanner is not None:
            self._scanner.feed(chunk)
        elif self._tap is not None:
            self._tap.feed(chunk)

    def entries(self) -> list[toc.TocEntry]:
        """The TOC entries seen (plain dumps: one ``TABLE DATA`` entry per COPY)."""
        if self._tap is not None:
            return self._tap.entries()
        assert self._scanner is not None
        return [toc.TocEntry("TABLE DATA", s, t) for s, t in self._scanner.tables]

    def close(self) -> None:
        """Stop the TOC tap's pg_restore, if any."""
        if self._tap is not None:
            self._tap.close()


def dump_stream(
    argv: list[str],
    conn: ConnInfo,
    timeout: float | None,
    stream: BackupStream,
    lister: DumpLister,
) -> list[toc.TocEntry]:
    """Run pg_dump ``argv`` with its stdout into ``lister`` and ``stream``; commit only after
    pg_dump exited 0. Returns the dump's TOC entries.

    Raises:
        ToolError: pg_dump failed or timed out (the writer is aborted).
    """
    try:
        with Child(argv, env=conn.child_env(), timeout=timeout) as child:
            for chunk in child.chunks():
                lister.feed(chunk)
                stream.write(chunk)
            child.check()
        entries = lister.entries()
        stream.commit()
    except BaseException:
        stream.writer.abort()
        raise
    finally:
        lister.close()
    return entries


def dump_directory(
    argv: list[str],
    conn: ConnInfo,
    timeout: float | None,
    stream: BackupStream,
    out: Path,
    pg_restore: Path,
) -> list[toc.TocEntry]:
    """Run pg_dump -Fd into ``out``, then stream it as a tar with ``toc.dat`` first.

    Raises:
        ToolError: pg_dump failed or timed out (the writer is aborted).
    """
    try:
        with Child(argv, env=conn.child_env(), stdout=None, timeout=timeout) as child:
            child.check()
        entries = toc.toc_from_path(pg_restore, out)
        with tarfile.open(fileobj=stream, mode="w|") as tar:  # type: ignore[call-overload]
            tar.add(out / "toc.dat", arcname="toc.dat")
            for path in sorted(out.iterdir()):
                if path.name != "toc.dat":
                    tar.add(path, arcname=path.name)
        stream.commit()
    except BaseException:
        stream.writer.abort()
        raise
    return entries


def dump_globals(
    settings: Settings,
    store: Storage,
    key: str,
    conn: ConnInfo,
    major: int,
    superuser: bool,
    recipients: Sequence[str],
) -> tuple[str, str] | None:
    """Store ``pg_dumpall --globals-only`` beside the backup ``key`` (age-encrypted like the
    backup: it holds role password hashes). Returns its key and the sha256 of the stored
    bytes (checked before any use); a pg_dumpall failure only warns (None).

    Raises:
        StorageError: the globals cannot be stored (the backup fails with it).
    """
    globals_key = key + ".globals.sql" + (".age" if recipients else "")
    try:
        pg_dumpall = tools.choose("pg_dumpall", major, settings.bin_dir)
        argv = pg_dumpall_globals_command(pg_dumpall.path, conn.dsn(), role_passwords=superuser)
        text = runner.run(argv, env=conn.child_env(), timeout=600).encode()
        if recipients:
            sealed = io.BytesIO()
            encryptor = Encryptor(sealed, parse_recipients(recipients))
            encryptor.write(text)
            encryptor.close()
            text = sealed.getvalue()
    except PgvaultError as exc:
        log.warning("globals (roles, tablespaces) not stored: %s", exc)
        return None
    store.write_bytes(globals_key, text)  # a storage failure fails the backup (full disk)
    return globals_key, hashlib.sha256(text).hexdigest()
