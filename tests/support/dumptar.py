"""A pg_dump directory archive as pgvault stores it: one tar with ``toc.dat`` first."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path


def directory_tar(directory: Path) -> bytes:
    """The tar of the directory archive ``directory``, ``toc.dat`` first, then the rest by
    name (as :func:`pgvault.backups.stream.dump_directory` writes it)."""
    tar = io.BytesIO()
    with tarfile.open(fileobj=tar, mode="w|") as out:
        out.add(directory / "toc.dat", arcname="toc.dat")
        for path in sorted(directory.iterdir()):
            if path.name != "toc.dat":
                out.add(path, arcname=path.name)
    return tar.getvalue()
