"""Private work directories under ``<home>/tmp``, removed at the next start after a crash.

Directory-format dumps, unpacked archives and spill files need room on disk. They go to
``<home>/tmp/<prefix>+<host>+<pid>+<random>`` (mode 0700, whatever the umask), never to
``/tmp``; the directory is removed when the work ends, and :func:`sweep` (run at every
start) removes those whose process died on this host.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from pgvault import private, runtime

log = logging.getLogger(__name__)


def root(home: Path) -> Path:
    """``<home>/tmp``, created (0700) if missing."""
    base = home.absolute() / "tmp"
    private.makedirs(base)
    return base


@contextmanager
def workdir(home: Path, prefix: str) -> Iterator[Path]:
    """A new private directory under ``<home>/tmp`` for the block, removed afterwards."""
    mark = f"{prefix}+{socket.gethostname()}+{os.getpid()}+"
    path = Path(tempfile.mkdtemp(prefix=mark, dir=root(home)))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def sweep(home: Path) -> list[Path]:
    """Remove the work directories of dead processes of this host; returns those removed."""
    base = home.absolute() / "tmp"
    if not base.is_dir():
        return []
    removed = []
    for path in base.iterdir():
        parts = path.name.split("+")
        if len(parts) < 4 or not path.is_dir():
            continue
        started = datetime.fromtimestamp(path.stat().st_mtime, UTC)
        if runtime.runner_is_dead(f"{parts[1]}:{parts[2]}", started):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
            log.info("removed %s, left by a pgvault process that died", path)
    return removed
