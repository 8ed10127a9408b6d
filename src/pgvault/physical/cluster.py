"""A PostgreSQL server pgvault starts on a restored data directory, and what its log says.

The server is started with ``pg_ctl start`` (so it outlives pgvault when asked to), with
``logging_collector = off``, ``log_min_messages = warning`` and ``lc_messages = C`` on its
command line, so recovery's own log lines - "recovery stopping before commit ... time T",
"redo done at X/Y", "last completed transaction was at log time T", "recovery ended
before configured recovery target was reached" (PostgreSQL ``xlogrecovery.c``) - reach the
file :class:`RecoveryLog` reads. Root cannot run PostgreSQL: as root the server runs as
``server_os_user``.
"""

from __future__ import annotations

import logging
import os
import pwd
import re
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

from pgvault.config.settings import Settings
from pgvault.errors import ConfigError, RestoreError, ToolError
from pgvault.physical.walnames import parse_lsn
from pgvault.postgres import localserver, runner, tools
from pgvault.postgres.physical_commands import (
    pg_controldata_command,
    pg_ctl_start_command,
    pg_ctl_stop_command,
)

log = logging.getLogger(__name__)

_TIME = r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)?)([+-]\d\d(?::?\d\d){0,2})?"
LAST_XACT = re.compile(r"last completed transaction was at log time " + _TIME)
REDO_DONE = re.compile(r"redo done at ([0-9A-F]+/[0-9A-F]+)")
STOPPING = re.compile(r"recovery stopping (?:before|after|at) .*?(?:time " + _TIME + r")?$")
STOP_LSN = re.compile(r'recovery stopping after WAL location \(LSN\) "([0-9A-F]+/[0-9A-F]+)"')
NOT_REACHED = "recovery ended before configured recovery target was reached"
PROMOTED = ("archive recovery complete", "selected new timeline ID")
READY = "database system is ready to accept connections"
START_GRACE_SECONDS = 30.0  # a postmaster not up after this long failed to start


def parse_log_time(text: str, offset: str | None) -> datetime:
    """A PostgreSQL log timestamp (``2026-12-01 14:32:05.123456+00``) as an aware datetime;
    no offset means UTC."""
    moment = datetime.fromisoformat(text)
    sign = -1 if offset and offset[0] == "-" else 1
    parts = [int(p) for p in re.findall(r"\d\d", offset or "")] + [0, 0, 0]
    delta = timedelta(hours=parts[0], minutes=parts[1], seconds=parts[2])
    return moment.replace(tzinfo=timezone(sign * delta))


@dataclass
class RecoveryLog:
    """What recovery has said so far, read incrementally from the server's log file."""

    path: Path
    offset: int = 0
    lines: list[str] = field(default_factory=list)
    last_xact: datetime | None = None
    redo_done: int | None = None
    stop_lsn: int | None = None
    stopping: str | None = None
    promoted: bool = False
    ready: bool = False
    not_reached: bool = False
    fatal: str | None = None

    def read(self) -> None:
        """Parse the lines written since the last call."""
        try:
            with open(self.path, "rb") as handle:
                handle.seek(self.offset)
                data = handle.read()
        except FileNotFoundError:
            return
        cut = data.rfind(b"\n") + 1
        self.offset += cut
        for raw in data[:cut].decode("utf-8", "replace").splitlines():
            self._line(raw)

    def _line(self, line: str) -> None:
        self.lines.append(line)
        if match := LAST_XACT.search(line):
            self.last_xact = parse_log_time(match.group(1), match.group(2))
        if match := REDO_DONE.search(line):
            self.redo_done = parse_lsn(match.group(1))
        if match := STOP_LSN.search(line):
            self.stop_lsn = parse_lsn(match.group(1))
        if "recovery stopping" in line:
            self.stopping = line
        if any(mark in line for mark in PROMOTED):
            self.promoted = True
        if READY in line and self.promoted:
            self.ready = True
        if NOT_REACHED in line:
            self.not_reached = True
        if ("FATAL:" in line or "PANIC:" in line) and self.fatal is None:
            self.fatal = line.split("FATAL:", 1)[-1].split("PANIC:", 1)[-1].strip()

    def tail(self, count: int = 5) -> str:
        """The last ``count`` lines, joined by `` | ``."""
        return " | ".join(line.strip() for line in self.lines[-count:])


def server_account(settings: Settings) -> tuple[int, int] | None:
    """``(uid, gid)`` the server must run as: None when pgvault is not root; as root the
    configured ``server_os_user``, else the system user of
    :func:`pgvault.postgres.localserver.server_user` (created when missing).

    Raises:
        ConfigError: ``server_os_user`` does not exist, or no user can be had.
    """
    if os.geteuid() != 0:
        return None
    if settings.server_os_user:
        try:
            entry = pwd.getpwnam(settings.server_os_user)
        except KeyError as exc:
            raise ConfigError(f"server_os_user {settings.server_os_user!r} does not exist") from exc
        return entry.pw_uid, entry.pw_gid
    user = localserver.server_user()
    assert user.uid is not None and user.gid is not None
    return user.uid, user.gid


def require_reachable(path: Path, account: tuple[int, int] | None) -> None:
    """Check the server's OS user can search every directory down to ``path``.

    Raises:
        ConfigError: a directory on the way is closed to it (names it and the fix).
    """
    if account is None:
        return
    uid, gid = account
    for directory in [*reversed(path.absolute().parents), path.absolute()]:
        if not directory.exists():
            return
        st = directory.stat()
        bit = 0o100 if st.st_uid == uid else 0o010 if st.st_gid == gid else 0o001
        if not st.st_mode & bit:
            raise ConfigError(
                f"the server's OS user (uid {uid}) cannot reach {path}: {directory} is not "
                "searchable by it; chmod o+x it or choose another directory"
            )


def reachable(path: Path, account: tuple[int, int] | None) -> bool:
    """Whether the server's OS user (``account``; None: pgvault's own) can search every
    existing directory down to ``path`` (:func:`require_reachable` without the error)."""
    try:
        require_reachable(path, account)
    except ConfigError:
        return False
    return True


def scratch_root(settings: Settings, account: tuple[int, int] | None) -> Path:
    """Where a throwaway cluster of pgvault's own goes (a verification, a restore of one
    database): ``<home>/restores`` when the server's OS user reaches it, else the system's
    temporary directory (as root, a private ``PGVAULT_HOME`` is closed to that user; the
    cluster's own directory is made 0700 and given to it there).
    """
    home = Path(settings.home).absolute() / "restores"
    if reachable(home, account):
        return home
    scratch = Path(tempfile.gettempdir())
    log.info("%s is closed to the server's OS user: its cluster goes under %s", home, scratch)
    return scratch


def give_tree(path: Path, account: tuple[int, int] | None) -> None:
    """chown ``path`` and everything under it to ``account`` (no-op for None).

    An entry that vanishes while the tree is walked is skipped: the WAL spool of a recovery
    is written (partial files renamed into place) while this runs, and its writer gives each
    file it makes to ``account`` itself (:class:`pgvault.physical.prefetch.WalServer`).
    """
    if account is None:
        return
    uid, gid = account
    os.chown(path, uid, gid)
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            try:
                os.lchown(os.path.join(root, name), uid, gid)
            except FileNotFoundError:
                continue  # renamed or removed since it was listed


def server_env() -> dict[str, str]:
    """The server's environment: none of pgvault's secrets, PG* or cloud variables."""
    keep = ("PATH", "HOME", "LANG", "TZ")
    env = {k: v for k, v in os.environ.items() if k in keep}
    env["LC_ALL"] = "C"
    return env


@dataclass
class Server:
    """A server on ``datadir`` run with PostgreSQL ``major``'s pg_ctl."""

    datadir: Path
    major: int
    log_file: Path
    account: tuple[int, int] | None
    bin_dir: Path | None = None

    def _tool(self, name: str) -> Path:
        return tools.choose_exact(name, self.major, self.bin_dir).path

    def start(self, settings: Mapping[str, str]) -> RecoveryLog:
        """``pg_ctl start`` (not waiting); returns the reader of its log.

        Raises:
            ToolError: pg_ctl of that major is missing or failed to launch the server.
        """
        forced = {
            "logging_collector": "off",
            "log_min_messages": "warning",
            "lc_messages": "C",
            **settings,
        }
        argv = pg_ctl_start_command(self._tool("pg_ctl"), self.datadir, self.log_file, forced)
        runner.run(argv, env=server_env(), timeout=120, run_as=self.account)
        return RecoveryLog(self.log_file)

    def running(self) -> bool:
        """Whether the postmaster of ``datadir`` is alive (``postmaster.pid``)."""
        try:
            pid = int((self.datadir / "postmaster.pid").read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return False
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    def stop(self) -> None:
        """``pg_ctl stop -m fast``; a server that is already down is fine."""
        if not self.running():
            return
        argv = pg_ctl_stop_command(self._tool("pg_ctl"), self.datadir)
        try:
            runner.run(argv, env=server_env(), timeout=180, run_as=self.account)
        except ToolError as exc:
            if self.running():
                raise
            log.debug("pg_ctl stop: %s", exc)

    def state(self) -> str:
        """``Database cluster state`` from ``pg_controldata`` (``in production``, ...)."""
        out = runner.run(
            pg_controldata_command(self._tool("pg_controldata"), self.datadir),
            env=server_env(),
            timeout=60,
        )
        for line in out.splitlines():
            if line.startswith("Database cluster state:"):
                return line.split(":", 1)[1].strip()
        return "unknown"

    def wait(self, watch: RecoveryLog, timeout: float | None) -> RecoveryLog:
        """Wait until recovery promoted the server and it accepts connections, or the server
        stopped (a FATAL recovery end), or ``timeout`` seconds passed.

        Raises:
            RestoreError: the timeout passed (the server is stopped first).
        """
        begun = time.monotonic()
        deadline = None if timeout is None else begun + timeout
        seen_up = False
        while True:
            watch.read()
            if watch.ready:
                return watch
            up = self.running()
            seen_up = seen_up or up
            never_started = not seen_up and time.monotonic() - begun > START_GRACE_SECONDS
            if not up and (seen_up or watch.fatal or never_started):
                time.sleep(0.2)  # let the last lines reach the file
                watch.read()
                return watch
            if deadline is not None and time.monotonic() > deadline:
                self.stop()
                raise RestoreError(
                    f"recovery did not finish within {timeout:.0f} s (last log: {watch.tail(2)})"
                )
            time.sleep(0.2)
