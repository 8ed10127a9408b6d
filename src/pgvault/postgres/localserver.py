"""A private PostgreSQL server that pgvault starts itself, from installed server binaries.

Used by ``pgvault demo`` (a throwaway server holding a sample database). The server listens
on 127.0.0.1 on a free port with ``scram-sha-256`` password authentication and on a Unix
socket in its own directory; the superuser is ``postgres`` with a random password that is
kept in a 0600 file beside the data directory, never on a command line.

PostgreSQL refuses to run as root (``initdb`` and ``postgres`` exit), so when pgvault runs as
root the server runs as the unprivileged OS user :data:`SERVER_USER` (created with
``useradd --system`` when missing), and its files live in a private directory under the
system's temporary directory that this user owns.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pgvault.errors import ConfigError, ToolError
from pgvault.postgres.conninfo import ConnInfo

SERVER_USER = "pgvault"
START_TIMEOUT = 60.0  # seconds for the server to accept connections


@dataclass(frozen=True)
class OsUser:
    """The OS user the server runs as (``None`` ids: the current user, no switch)."""

    name: str
    uid: int | None = None
    gid: int | None = None

    def popen_kwargs(self) -> dict[str, Any]:
        """``subprocess`` arguments that start a child as this user."""
        if self.uid is None:
            return {}
        return {"user": self.uid, "group": self.gid, "extra_groups": []}

    def give(self, path: Path) -> None:
        """Make ``path`` owned by this user (when switching users)."""
        if self.uid is not None and self.gid is not None:
            os.chown(path, self.uid, self.gid)

    def give_link(self, path: Path) -> None:
        """:meth:`give`, of a symbolic link itself rather than what it points to."""
        if self.uid is not None and self.gid is not None:
            os.lchown(path, self.uid, self.gid)


def server_user() -> OsUser:
    """Who runs the server: the current user, or :data:`SERVER_USER` when we are root.

    Raises:
        ConfigError: root, and the user is missing and cannot be created.
    """
    if os.geteuid() != 0:
        return OsUser(pwd.getpwuid(os.geteuid()).pw_name)
    try:
        entry = pwd.getpwnam(SERVER_USER)
    except KeyError:
        done = subprocess.run(
            ["useradd", "--system", "--no-create-home", "--user-group", "--shell"]
            + ["/usr/sbin/nologin", "--home-dir", "/nonexistent", SERVER_USER],
            capture_output=True,
            text=True,
            check=False,
        )
        try:
            entry = pwd.getpwnam(SERVER_USER)
        except KeyError:
            raise ConfigError(
                f"PostgreSQL does not run as root and the OS user {SERVER_USER!r} cannot be "
                f"created (useradd: {done.stderr.strip() or done.returncode}): run this as a "
                "normal user"
            ) from None
    return OsUser(entry.pw_name, entry.pw_uid, entry.pw_gid)


def _usable_by_others(bindir: Path) -> bool:
    """Whether other users reach ``bindir`` (every directory above it ``o+x``) and may run
    its programs (a wheel's files, as pip installs them)."""
    if not all(p.stat().st_mode & stat.S_IXOTH for p in bindir.resolve().parents):
        return False
    programs = [bindir, *(bindir / name for name in ("initdb", "postgres", "pg_ctl"))]
    return all(p.stat().st_mode & stat.S_IXOTH for p in programs)


def _installed_for(user: OsUser, bindir: Path, copy: Path) -> Path:
    """A copy of the installation above ``bindir`` at ``copy``, owned by ``user``: what
    pgvault unpacked itself is private to pgvault's own user (its umask is 077) or sits
    where other users cannot reach, so the server's user runs its own copy. Returns the
    copy's ``bin``.

    Raises:
        OSError: the copy could not be made.
    """
    shutil.copytree(bindir.parent, copy, symlinks=True)
    for top, dirs, files in os.walk(copy):
        for name in dirs + files:
            user.give_link(Path(top) / name)
    user.give(copy)
    return copy / "bin"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@dataclass
class LocalServer:
    """One running private server. Create with :meth:`create`; :meth:`stop` then
    :meth:`remove` when done (the data is gone after that)."""

    bindir: Path
    root: Path
    port: int
    user: OsUser
    password: str = field(repr=False)
    process: subprocess.Popen[bytes] | None = None

    @property
    def datadir(self) -> Path:
        """The cluster's data directory."""
        return self.root / "data"

    @property
    def password_file(self) -> Path:
        """The 0600 file holding the superuser's password (one line)."""
        return self.root / "password"

    @classmethod
    def create(cls, bindir: Path, root: Path | None, *, major_hint: str = "") -> LocalServer:
        """``initdb`` a new cluster and start it on a free port of 127.0.0.1.

        Args:
            bindir: a directory holding ``initdb``, ``postgres`` and ``pg_ctl``.
            root: where its files go (created, must not exist yet); as root it is ignored
                and a private directory under the system temporary directory is used.
            major_hint: words for messages (``"18"``).

        Raises:
            ToolError: the binaries are missing or initdb/postgres failed (log tail given).
            ConfigError: running as root and no unprivileged OS user can be had.
        """
        for program in ("initdb", "postgres", "pg_ctl"):
            if not (bindir / program).is_file():
                raise ToolError(f"no PostgreSQL {major_hint} server program {program} in {bindir}")
        user = server_user()
        try:
            if user.uid is not None:
                root = Path(tempfile.mkdtemp(prefix="pgvault-server-"))
                if not _usable_by_others(bindir):
                    bindir = _installed_for(user, bindir, root / "install")
                root.chmod(0o711)
            else:
                assert root is not None
                root.mkdir(parents=True, mode=0o700)
        except OSError as exc:
            raise ToolError(
                f"the PostgreSQL {major_hint} server programs cannot be made ready for "
                f"{user.name}: {exc.strerror or exc}: check the free space and permissions "
                "of the temporary directory"
            ) from exc
        server = cls(bindir, root, 0, user, secrets.token_urlsafe(24))
        server._initdb()
        server._start()
        return server

    def _run(self, argv: list[str]) -> None:
        done = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            cwd=self.root,
            env=self._env(),
            check=False,
            **self.user.popen_kwargs(),
        )
        if done.returncode != 0:
            tail = "; ".join(done.stderr.strip().splitlines()[-3:])
            raise ToolError(f"{Path(argv[0]).name} failed: {tail}")

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["LC_ALL"] = "C.UTF-8"
        return env

    def _initdb(self) -> None:
        self.password_file.write_text(self.password + "\n")
        self.password_file.chmod(0o600)
        self.user.give(self.password_file)
        self.datadir.mkdir(mode=0o700)
        self.user.give(self.datadir)
        self._run(
            [str(self.bindir / "initdb"), "-D", str(self.datadir), "-U", "postgres"]
            + ["--auth-local=scram-sha-256", "--auth-host=scram-sha-256"]
            + [f"--pwfile={self.password_file}", "--encoding=UTF8", "--locale=C.UTF-8"]
            + ["--no-sync", "--no-instructions"]
        )

    def _start(self) -> None:
        log = self.root / "server.log"
        for _attempt in range(5):  # a free port can be taken between probe and bind
            self.port = _free_port()
            options = ["-c", "listen_addresses=127.0.0.1", "-c", f"port={self.port}"]
            options += ["-c", "unix_socket_directories="]  # TCP only: no socket path limits
            with open(log, "ab") as out:
                self.process = subprocess.Popen(
                    [str(self.bindir / "postgres"), "-D", str(self.datadir), *options],
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=out,
                    cwd=self.root,
                    env=self._env(),
                    start_new_session=True,
                    **self.user.popen_kwargs(),
                )
            if self._wait_ready():
                return
        tail = "; ".join(log.read_text(errors="replace").strip().splitlines()[-3:])
        raise ToolError(f"the private PostgreSQL server did not start: {tail}")

    def _wait_ready(self) -> bool:
        deadline = time.monotonic() + START_TIMEOUT
        assert self.process is not None
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                if sock.connect_ex(("127.0.0.1", self.port)) == 0 and self._accepts():
                    return True
            time.sleep(0.05)
        self.stop()
        return False

    def _accepts(self) -> bool:
        done = subprocess.run(
            [str(self.bindir / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(self.port)],
            check=False,
            capture_output=True,
        )
        return done.returncode == 0

    def conninfo(self, dbname: str = "postgres") -> ConnInfo:
        """How to reach database ``dbname`` as the superuser (the password kept apart)."""
        params = {"host": "127.0.0.1", "port": str(self.port), "user": "postgres"}
        return ConnInfo(params={**params, "dbname": dbname}, password=self.password)

    def url(self, dbname: str) -> str:
        """``postgresql://postgres@127.0.0.1:PORT/dbname`` (no password)."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"

    def stop(self) -> None:
        """Fast shutdown (SIGINT); idempotent."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGINT)
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def detach(self) -> None:
        """Let the server outlive this process (it keeps running until stopped by hand)."""
        self.process = None

    def remove(self) -> None:
        """Delete every file of the server (after :meth:`stop`)."""
        shutil.rmtree(self.root, ignore_errors=True)
