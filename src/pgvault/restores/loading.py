"""Loading a dump into one database: pg_restore or psql, error triage, version fallback.

Used by restores (into a scratch or live database) and by full verification. A dump from a
newer pg_dump can carry constructs an older server rejects (``SET transaction_timeout``,
``CREATE SUBSCRIPTION ... run_as_owner``: see :mod:`pgvault.dumps.sqlscript`). When the
dump's pg_dump is newer than the target server, or an attempt fails with one of
:data:`~pgvault.dumps.sqlscript.VERSION_ERRORS`, the database is reset and the dump is
replayed as ``pg_restore -f -`` | :class:`SetFilter` | ``psql --single-transaction``.

Every SQL stream fed to psql here (a plain dump, ``pg_restore -f -`` output) is SQL pgvault
did not write: it passes a :class:`~pgvault.dumps.psqlguard.PsqlGuard` (a meta-command
fails the load before psql sees its line) into a psql in restricted mode (``\\restrict``
with a fresh key), and psql is killed before the end of its input when anything is wrong,
so its single transaction commits nothing.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
import tarfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, cast

from pgvault import private
from pgvault.dumps.layers import DecryptHook, OpenedDump, Sink, copy_stream, open_layers
from pgvault.dumps.psqlguard import PsqlGuard, restrict_key
from pgvault.dumps.sqlscript import SetFilter, version_error
from pgvault.dumps.toc import toc_from_path, toc_from_stream
from pgvault.errors import ArchiveError, RestoreError, ToolError
from pgvault.postgres.commands import pg_restore_command, psql_command
from pgvault.postgres.conninfo import ConnInfo
from pgvault.postgres.runner import Child
from pgvault.progress import ProgressEvent, Report

log = logging.getLogger(__name__)

# Errors that do not fail a restore; each is reported as a warning. Keep this list short.
ALLOWED_ERRORS = (
    re.compile(r'schema "public" already exists'),  # pre-15 dumps recreate public
    re.compile(r'extension "plpgsql" already exists'),
    re.compile(r"must be owner of (extension plpgsql|schema public)"),  # COMMENT by non-owner
)

# pg_dump's plain SQL opens with "-- PostgreSQL database dump" and ends with "-- PostgreSQL
# database dump complete": a dump with the first and not the last was cut short.
PLAIN_HEADER = b"PostgreSQL database dump"
PLAIN_TRAILER = b"PostgreSQL database dump complete"


@dataclass
class Source:
    """A dump to load; :meth:`open` gives a fresh stream each time, so a retry reads again.

    Args:
        label: backup id or file path, for messages.
        open_raw: opens the stored bytes (a file, a storage object).
        local_file: a local file holding exactly those bytes, when there is one.
        decrypt: unwraps an age layer.
    """

    label: str
    open_raw: Callable[[], IO[bytes]]
    local_file: Path | None = None
    decrypt: DecryptHook | None = None

    def open(self) -> OpenedDump:
        """The dump stream with compression and encryption removed (by content).

        Raises:
            ArchiveError: not a dump.
        """
        return open_layers(self.open_raw(), self.decrypt)

    def seekable_file(self, opened: OpenedDump) -> Path | None:
        """The local file pg_restore can read directly (no compression/encryption layer)."""
        return self.local_file if not opened.layers else None


@dataclass(frozen=True)
class LoadOptions:
    """How to load: parallel jobs, and pg_restore's clean/owner/privilege flags; the target
    server's major version and that of the pg_dump that wrote the dump (None: unknown)."""

    jobs: int = 1
    clean: bool = False
    no_owner: bool = False
    no_privileges: bool = False
    single_transaction: bool = False
    server_major: int | None = None
    dump_major: int | None = None


@dataclass
class LoadResult:
    """What a load reported: tolerated errors, and whether the fallback path ran."""

    warnings: list[str] = field(default_factory=list)
    used_fallback: bool = False
    dropped_settings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Tools:
    """The client programs a load uses; ``psql_restrict``: psql has restricted mode
    (``\\restrict``, see :func:`pgvault.dumps.psqlguard.supports_restrict`)."""

    pg_restore: Path
    psql: Path
    psql_restrict: bool = True

    def checked_psql(self) -> Path:
        """psql, when it can replay SQL pgvault did not write.

        Raises:
            ToolError: this psql has no restricted mode.
        """
        if not self.psql_restrict:
            raise ToolError(
                f"{self.psql} has no restricted mode (\\restrict: psql 13.22, 14.19, 15.14, "
                "16.10, 17.6, 18 or newer): install a newer psql (pgvault[bundled-tools]) "
                "to replay SQL dumps"
            )
        return self.psql


class _NeedsFallback(Exception):
    """The first attempt failed only on settings the server does not know."""


def load(
    source: Source,
    target: ConnInfo,
    tools: Tools,
    options: LoadOptions,
    workdir: Path,
    *,
    known_settings: Callable[[], set[str]],
    reset: Callable[[], None],
    progress: Report | None = None,
    entries: int | None = None,
) -> LoadResult:
    """Load ``source`` into the database ``target``; every non-allowed error fails it.

    Args:
        workdir: a private directory for unpacking directory archives.
        known_settings: the server's parameter names (for the fallback filter).
        reset: empties the target again before the fallback attempt.
        progress: gets ``loading`` events counting TOC entries done (from pg_restore
            ``--verbose``) of ``entries`` (the archive's TOC size, when known).

    Raises:
        RestoreError: pg_restore/psql reported an error (first one, one line).
        ArchiveError: the source is not a readable dump.
    """
    if options.clean:
        # pg_restore --clean alone cannot replace partitioned tables (it drops a partition's
        # inherited key before its parent's); the SQL path drops the archive's tables first.
        return _fallback(source, target, tools, options, workdir, known_settings())
    server_major, dump_major = options.server_major, options.dump_major
    if server_major is not None and dump_major is not None and dump_major > server_major:
        log.info(
            "dump written by pg_dump %s, server is %s: loading through the version fallback",
            dump_major,
            server_major,
        )
        return _fallback(source, target, tools, options, workdir, known_settings())
    try:
        return _attempt(source, target, tools, options, workdir, _EntryCounter(progress, entries))
    except _NeedsFallback as exc:
        log.warning("%s; retrying through the version fallback (psql, filtered SQL)", exc)
    reset()
    return _fallback(source, target, tools, options, workdir, known_settings())


class _EntryCounter:
    """Counts the TOC entries pg_restore ``--verbose`` reports done (serial: ``creating``
    and ``processing data for``; parallel: ``processing item`` before the workers start,
    then ``finished item``) and reports them as ``loading`` progress."""

    _DONE = ("creating ", "processing data for ", "processing item ", "finished item ")

    def __init__(self, progress: Report | None, total: int | None) -> None:
        self.progress = progress
        self.total = total
        self.done = 0
        self.parallel = False

    def line(self, line: str) -> None:
        text = line.removeprefix("pg_restore: ")
        if self.progress is None or not text.startswith(self._DONE):
            return
        if text.startswith("creating ") and self.parallel:
            return  # parallel mode also says "creating" after "processing item"
        self.done += 1
        done = min(self.done, self.total) if self.total else self.done
        self.progress(ProgressEvent("loading", done, self.total, "entries"))


def _attempt(
    source: Source,
    target: ConnInfo,
    tools: Tools,
    options: LoadOptions,
    workdir: Path,
    counter: _EntryCounter | None = None,
) -> LoadResult:
    opened = source.open()
    env = target.child_env()
    with opened.stream as stream:
        if opened.kind == "plain":
            if options.clean:
                raise RestoreError("clean mode needs a custom or directory archive, not plain SQL")
            argv = psql_command(tools.checked_psql(), target.dsn(), single_transaction=True)
            plain = _PlainEnds(stream)
            return _finish(
                _psql(argv, env, lambda sink: copy_stream(cast(IO[bytes], plain), sink), plain)
            )
        archive = _archive_path(source, opened, workdir, options.jobs)
        argv = pg_restore_command(
            tools.pg_restore,
            dsn=target.dsn(),
            archive=archive,
            jobs=options.jobs if archive is not None else 1,
            clean=options.clean,
            no_owner=options.no_owner,
            no_privileges=options.no_privileges,
            single_transaction=options.single_transaction,
            exit_on_error=options.single_transaction,
            verbose=counter is not None and counter.progress is not None,
        )
        on_line = counter.line if counter is not None else None
        if counter is not None:
            counter.parallel = archive is not None and options.jobs > 1
        if archive is not None:
            with Child(argv, env=env, stdout=subprocess.DEVNULL, on_line=on_line) as child:
                child.wait()
            return _finish(child)
        return _finish(_pump(argv, env, stream, on_line=on_line))


def _archive_path(source: Source, opened: OpenedDump, workdir: Path, jobs: int) -> Path | None:
    """A path for pg_restore: the local file, an unpacked directory archive, or (for a
    parallel restore of a stream) a decompressed spill file; None means "pipe the stream"."""
    if opened.kind == "tar":
        target = workdir / "archive"
        target.mkdir(exist_ok=True)
        try:
            with tarfile.open(fileobj=opened.stream, mode="r|") as tar:
                tar.extractall(target, filter="data")
        except tarfile.TarError as exc:
            raise ArchiveError(
                f"the directory archive (tar) is corrupt or cut short: {exc}"
            ) from exc
        return target
    local = source.seekable_file(opened)
    if local is not None:
        return local
    if jobs > 1:
        spill = workdir / "archive.dump"
        with private.create(spill) as out:
            copy_stream(opened.stream, out)
        return spill
    return None


def _pump(
    argv: list[str],
    env: dict[str, str],
    stream: IO[bytes],
    on_line: Callable[[str], None] | None = None,
) -> Child:
    """Run ``argv`` with ``stream`` on its stdin; returns the finished child."""
    with Child(
        argv, env=env, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, on_line=on_line
    ) as child:
        try:
            copy_stream(stream, child.stdin)
            child.stdin.close()
        except BrokenPipeError:
            pass  # the child stopped reading: its exit status and stderr say why
        child.wait()
    return child


def _psql(
    argv: list[str],
    env: dict[str, str],
    feed: Callable[[Sink], object],
    plain: _PlainEnds | None = None,
    wrap: Callable[[Sink], Sink] | None = None,
) -> Child:
    """Run psql ``argv`` in restricted mode on SQL that ``feed`` writes through a
    :class:`PsqlGuard` (then ``wrap``, e.g. the SET filter); returns the finished child.

    A refused meta-command, a cut-short plain dump (``plain.check``) or any other error
    kills psql before it sees the end of its input: ``--single-transaction`` commits nothing.

    Raises:
        MetaCommandRefused: the SQL holds a psql meta-command.
        ArchiveError: the plain dump is cut short.
    """
    with Child(argv, env=env, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL) as child:
        inner: Sink = child.stdin if wrap is None else wrap(child.stdin)
        guard = PsqlGuard(inner, restrict_key())
        try:
            feed(guard)
            guard.close()
            if plain is not None:
                plain.check()
            closer = getattr(inner, "close", None)
            if inner is not child.stdin and closer is not None:
                closer()
            child.stdin.close()
        except BrokenPipeError:
            pass  # psql stopped reading: its exit status and stderr say why
        child.wait()
    return child


class _PlainEnds:
    """Passes a plain dump through, keeping its first and last bytes to tell whether a
    pg_dump dump is whole (see :data:`PLAIN_TRAILER`)."""

    def __init__(self, stream: IO[bytes]) -> None:
        self._stream = stream
        self._head = b""
        self._tail = b""

    def read(self, size: int = -1) -> bytes:
        data = self._stream.read(size)
        if len(self._head) < 512:
            self._head = (self._head + data)[:512]
        self._tail = (self._tail + data[-4096:])[-4096:]
        return data

    def check(self) -> None:
        """Raises:
        ArchiveError: a pg_dump plain dump without its closing trailer (cut short).
        """
        if PLAIN_HEADER in self._head and PLAIN_TRAILER not in self._tail:
            raise ArchiveError(
                "this plain dump is cut short (pg_dump's 'dump complete' trailer is missing): "
                "nothing was loaded"
            )


def _finish(child: Child, *, fallback_ok: bool = True) -> LoadResult:
    """Triage the child's errors: allowed ones become warnings, others fail the load; a
    version error (with ``fallback_ok``) asks for the version fallback."""
    result = LoadResult()
    fatal = []
    for line in child.error_lines:
        if "ERROR:" not in line and "FATAL:" not in line and "error:" not in line:
            continue
        if any(p.search(line) for p in ALLOWED_ERRORS):
            result.warnings.append(line)
        elif "errors ignored on restore" not in line:
            fatal.append(line)
    versioned = [line for line in fatal if version_error(line)]
    if versioned and fallback_ok:
        raise _NeedsFallback(_tidy(versioned[0]))
    if fatal:
        # the fallback handles version errors: the real cause is the first other error
        cause = next((line for line in fatal if not version_error(line)), fatal[0])
        raise RestoreError(f"{child.name} failed: {_tidy(cause)}")
    if child.proc.returncode != 0 and not result.warnings:
        raise RestoreError(f"{child.name} failed: {_tidy(child.message())}")
    return result


def _tidy(line: str) -> str:
    return re.sub(r"^(pg_restore|psql)(:[^:]*:\d+)?: (error: )?", "", line).strip()


def _fallback(
    source: Source,
    target: ConnInfo,
    tools: Tools,
    options: LoadOptions,
    workdir: Path,
    known: set[str],
) -> LoadResult:
    """Replay the dump as SQL through :class:`SetFilter` into one psql transaction (in clean
    mode after dropping the archive's tables)."""
    env = target.child_env()
    opened = source.open()
    if options.clean and opened.kind == "plain":
        opened.stream.close()
        raise RestoreError("clean mode needs a custom or directory archive, not plain SQL")
    psql_argv = psql_command(tools.checked_psql(), target.dsn(), single_transaction=True)
    filters: list[SetFilter] = []

    def set_filter(sink: Sink) -> Sink:
        filters.append(SetFilter(sink, known, options.server_major))
        return filters[0]

    with opened.stream as stream:
        plain = _PlainEnds(stream) if opened.kind == "plain" else None

        def feed(sink: Sink) -> None:
            if plain is not None:
                copy_stream(cast(IO[bytes], plain), sink)
            else:
                _pg_restore_to_sql(source, opened, tools, options, workdir, sink, env)

        psql = _psql(psql_argv, env, feed, plain, wrap=set_filter)
    result = _finish(psql, fallback_ok=False)
    result.used_fallback = True
    result.dropped_settings = sorted(set(filters[0].dropped)) if filters else []
    for sql_filter in filters:
        result.warnings += sql_filter.notes
        for change in sql_filter.changes:
            log.info("version fallback: %s", change)
    return result


def _pg_restore_to_sql(
    source: Source,
    opened: OpenedDump,
    tools: Tools,
    options: LoadOptions,
    workdir: Path,
    sink: Sink,
    env: dict[str, str],
) -> None:
    archive = _archive_path(source, opened, workdir, jobs=1)
    if options.clean:
        sink.write(_drop_tables_sql(source, archive, tools))
    argv = pg_restore_command(
        tools.pg_restore,
        archive=archive,
        to_stdout=True,
        clean=options.clean,
        no_owner=options.no_owner,
        no_privileges=options.no_privileges,
    )
    stdin = subprocess.DEVNULL if archive is not None else subprocess.PIPE
    with Child(argv, env=env, stdin=stdin) as child:
        feeder = None
        failure: list[BaseException] = []
        if archive is None:

            def feed() -> None:
                try:
                    copy_stream(opened.stream, child.stdin)
                    child.stdin.close()
                except BrokenPipeError:
                    pass
                except BaseException as exc:  # reported after the join
                    failure.append(exc)
                    child.kill()

            feeder = threading.Thread(target=feed, daemon=True)
            feeder.start()
        for chunk in child.chunks():
            sink.write(chunk)
        if feeder is not None:
            feeder.join()
        if failure:
            raise failure[0]
        if child.wait() != 0:
            raise ArchiveError(f"pg_restore cannot read this archive: {_tidy(child.message())}")


def _drop_tables_sql(source: Source, archive: Path | None, tools: Tools) -> bytes:
    """``DROP TABLE IF EXISTS ... CASCADE`` for every table in the archive's TOC: run first in
    the clean-mode transaction, so ``--clean``'s own drops find nothing in their way."""
    if archive is not None:
        entries = toc_from_path(tools.pg_restore, archive)
    else:
        with source.open().stream as stream:
            entries = toc_from_stream(tools.pg_restore, stream)
    statements = [
        f"DROP TABLE IF EXISTS {_quote(e.schema)}.{_quote(e.name)} CASCADE;\n"
        for e in entries
        if e.kind == "TABLE"
    ]
    return "".join(statements).encode()


def _quote(identifier: str) -> str:
    """An SQL identifier in double quotes (embedded quotes doubled)."""
    return '"' + identifier.replace('"', '""') + '"'


def default_jobs() -> int:
    """Parallel restore workers when none are asked for: the cores, at most 4."""
    return max(1, min(4, os.cpu_count() or 1))
