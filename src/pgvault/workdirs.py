"""Private work directories under ``<home>/tmp``, removed at the next start after a crash.

Directory-format dumps, unpacked archives and spill files need room on disk. They go to
``<home>/tmp/<prefix>+<host>+<pid>+<random>`` (mode 0700, whatever the umask), never to
``/tmp``; the directory is removed when the work ends, and :func:`sweep` (run at every
start) removes those whose process died on this host. Directories that must live elsewhere
(a throwaway recovery cluster the server's OS user must reach) carry the same
:func:`mark` in their name, and :func:`sweep_marked` removes them the same way.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from pgvault import private, runtime

log = logging.getLogger(__name__)

RECOVERY_PREFIX = "pgvault-recovery"
"""The :func:`mark` prefix of a private recovery cluster's work directory
(:func:`pgvault.physical.private.private_cluster`)."""


def root(home: Path) -> Path:
    """``<home>/tmp``, created (0700) if missing."""
    base = home.absolute() / "tmp"
    private.makedirs(base)
    return base


def mark(prefix: str) -> str:
    """``<prefix>+<host>+<pid>+``: how a work directory's name starts, telling
    :func:`sweep` which process of which host made it."""
    return f"{prefix}+{socket.gethostname()}+{os.getpid()}+"


@contextmanager
def workdir(home: Path, prefix: str) -> Iterator[Path]:
    """A new private directory under ``<home>/tmp`` for the block, removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix=mark(prefix), dir=root(home)))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def scratch_places(home: Path) -> list[Path]:
    """Where work directories that the server's OS user must reach may be:
    ``<home>/restores`` and the system's temporary directory."""
    return [home.absolute() / "restores", Path(tempfile.gettempdir())]


def marked_in(places: list[Path], prefix: str) -> bool:
    """Whether any directory of ``places`` holds a name of :func:`mark` with ``prefix``
    (a cheap look before importing what sweeps them)."""
    start = prefix + "+"
    for base in places:
        try:
            with os.scandir(base) as entries:
                if any(e.name.startswith(start) for e in entries):
                    return True
        except OSError:
            continue
    return False


def sweep(home: Path) -> list[Path]:
    """Remove the work directories of dead processes of this host; returns those removed."""
    return sweep_marked(home.absolute() / "tmp")


def sweep_marked(
    base: Path, prefix: str | None = None, busy: Callable[[Path], bool] | None = None
) -> list[Path]:
    """Remove the directories under ``base`` named by :func:`mark` (with ``prefix``, when
    given) whose process died on this host, unless ``busy`` says one is still in use;
    returns those removed."""
    if not base.is_dir():
        return []
    removed = []
    for path in base.iterdir():
        parts = path.name.split("+")
        if len(parts) < 4 or (prefix is not None and parts[0] != prefix) or not path.is_dir():
            continue
        started = datetime.fromtimestamp(path.stat().st_mtime, UTC)
        if not runtime.runner_is_dead(f"{parts[1]}:{parts[2]}", started):
            continue
        if busy is not None and busy(path):
            log.warning("%s was left by a pgvault process that died but is in use: kept", path)
            continue
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
        log.info("removed %s, left by a pgvault process that died", path)
    return removed
