"""The unprivileged OS user that runs test PostgreSQL servers when the tests run as root.

PostgreSQL refuses to run as root (``initdb``, ``pg_ctl`` and ``postgres`` all exit), so as
root we create a system user ``pgvault_test`` once and start the server processes as that
user; otherwise the servers simply run as the current user.
"""

from __future__ import annotations

import ctypes
import os
import pwd
import signal
import stat
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypedDict

SERVER_USER = "pgvault_test"
_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


class SwitchUser(TypedDict, total=False):
    """``subprocess`` keyword arguments that switch the child to another user."""

    user: int
    group: int
    extra_groups: list[int]


@dataclass(frozen=True)
class ServerUser:
    """Who runs the server: ``uid``/``gid`` to switch to, or ``None`` to stay as we are."""

    name: str
    uid: int
    gid: int

    def popen_kwargs(self) -> SwitchUser:
        """Keyword arguments for ``subprocess`` that run the child as this user.

        Empty when we are not root (no switch needed). ``extra_groups=[]`` drops root's
        supplementary groups.
        """
        if os.geteuid() != 0:
            return SwitchUser()
        return SwitchUser(user=self.uid, group=self.gid, extra_groups=[])

    def give(self, path: Path) -> None:
        """Make ``path`` (a file or an empty directory) owned by this user; no-op unless root."""
        if os.geteuid() == 0:
            os.chown(path, self.uid, self.gid)


def server_user() -> ServerUser:
    """Return the user to run servers as, creating ``pgvault_test`` if root and it is missing.

    Raises:
        RuntimeError: root, the user is missing and ``useradd`` failed.
    """
    if os.geteuid() != 0:
        me = pwd.getpwuid(os.geteuid())
        return ServerUser(me.pw_name, me.pw_uid, me.pw_gid)
    try:
        entry = pwd.getpwnam(SERVER_USER)
    except KeyError:
        done = subprocess.run(
            ["useradd", "--system", "--no-create-home", "--user-group"]
            + ["--shell", "/usr/sbin/nologin", "--home-dir", "/nonexistent", SERVER_USER],
            capture_output=True,
            text=True,
            check=False,
        )
        try:  # exit code 9 = already exists (another process won the race): fine
            entry = pwd.getpwnam(SERVER_USER)
        except KeyError:
            raise RuntimeError(
                f"cannot create OS user {SERVER_USER!r} to run PostgreSQL as non-root: "
                f"useradd exited {done.returncode}: {done.stderr.strip()}"
            ) from None
    return ServerUser(entry.pw_name, entry.pw_uid, entry.pw_gid)


def ensure_traversable(path: Path) -> None:
    """Add ``o+x`` (search, not list) to ``path`` and each ancestor lacking it, when root.

    Needed so the server user reaches data under e.g. pytest's 0700 ``/tmp/pytest-of-root``
    or binaries under a 0700 home directory. No-op when not root.
    """
    if os.geteuid() != 0:
        return
    for p in [path, *path.parents]:
        mode = p.stat().st_mode
        if not mode & stat.S_IXOTH:
            p.chmod(stat.S_IMODE(mode) | stat.S_IXOTH)


def ensure_readable_tree(root: Path) -> None:
    """Add ``o+rX`` below ``root`` (files readable, dirs listable) when root; for bin/lib/share.

    Only walks the tree if ``root/bin/postgres`` is not already world-executable.
    """
    probe = root / "bin" / "postgres"
    if os.geteuid() != 0 or (probe.exists() and probe.stat().st_mode & stat.S_IXOTH):
        return
    ensure_traversable(root)
    for dirpath, _dirs, files in os.walk(root):
        d = Path(dirpath)
        d.chmod(stat.S_IMODE(d.stat().st_mode) | stat.S_IROTH | stat.S_IXOTH)
        for name in files:
            f = d / name
            mode = stat.S_IMODE(f.stat().st_mode)
            extra = stat.S_IROTH | (stat.S_IXOTH if mode & stat.S_IXUSR else 0)
            f.chmod(mode | extra)


def die_with_parent(sig: int = signal.SIGINT) -> Callable[[], None] | None:
    """A ``preexec_fn`` making the child receive ``sig`` when the spawning thread dies (Linux).

    Used so a postmaster never outlives a killed pytest: SIGINT is PostgreSQL's "fast
    shutdown". Returns ``None`` on non-Linux platforms (no such guard there).
    """
    if not sys.platform.startswith("linux"):
        return None
    parent = os.getpid()

    def _preexec() -> None:  # runs in the child, after the uid switch (which would reset it)
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
        if os.getppid() != parent:  # parent already gone before prctl took effect
            os._exit(1)

    return _preexec
