"""Files only pgvault's own user can read: 0600 files, 0700 directories, whatever the umask.

Dumps, globals files (SCRAM verifiers), manifests, the SQLite catalog (argon2 and token
hashes), locks and work directories are created through these helpers; ``pgvault doctor``
warns about anything readable by others that is already there.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import IO

FILE_MODE = 0o600
DIR_MODE = 0o700


def makedirs(path: Path) -> None:
    """Create ``path`` and its missing parents as 0700 directories (existing ones are left
    as they are)."""
    missing = []
    current = path
    while not current.exists():
        missing.append(current)
        if current.parent == current:
            break
        current = current.parent
    for directory in reversed(missing):
        try:
            directory.mkdir(mode=DIR_MODE)
        except FileExistsError:
            continue
        os.chmod(directory, DIR_MODE)  # mkdir's mode is masked by the umask


def create(path: Path) -> IO[bytes]:
    """Open ``path`` for writing as a new (or emptied) 0600 file."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)
        return os.fdopen(fd, "wb")
    except BaseException:
        os.close(fd)
        raise


def ensure_file(path: Path) -> None:
    """Create ``path`` empty as a 0600 file if it is missing; tighten it to 0600 if it is
    readable or writable by others."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
    try:
        if os.fstat(fd).st_mode & 0o077:
            os.fchmod(fd, FILE_MODE)
    finally:
        os.close(fd)
