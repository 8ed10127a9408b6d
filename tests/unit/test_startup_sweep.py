"""The start-up repair removes the private recovery clusters a dead pgvault process left.

Work directories named by ``workdirs.mark`` under ``<home>/restores`` and the system's
temporary directory: one of a dead process is removed, one of a live process is kept, and
one whose server still runs (its ``postmaster.pid`` names a live process) is kept too.
"""

from __future__ import annotations

import os
import socket
import subprocess
import tempfile
from pathlib import Path

from pgvault import workdirs
from pgvault.catalog import Catalog
from pgvault.config.settings import load_settings
from pgvault.operations import startup


def _dead_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def _leftover(base: Path, pid: int, postmaster: int | None = None) -> Path:
    base.mkdir(parents=True, exist_ok=True)
    path = Path(
        tempfile.mkdtemp(
            prefix=f"{workdirs.RECOVERY_PREFIX}+{socket.gethostname()}+{pid}+", dir=base
        )
    )
    (path / "cluster").mkdir()
    (path / "cluster" / "PG_VERSION").write_text("18\n")
    if postmaster is not None:
        (path / "cluster" / "postmaster.pid").write_text(f"{postmaster}\n/data\n")
    return path


def test_recovery_clusters_of_dead_processes_are_swept(tmp_path: Path) -> None:
    home = tmp_path / "home"
    settings = load_settings(None, home=home, catalog_url=f"sqlite:///{tmp_path / 'c.sqlite3'}")
    restores = home / "restores"
    dead = _leftover(restores, _dead_pid())
    in_tmp = _leftover(Path(tempfile.gettempdir()), _dead_pid())
    alive = _leftover(restores, os.getpid())
    serving = _leftover(restores, _dead_pid(), postmaster=os.getpid())
    other = restores / "someone-else+x"
    other.mkdir()
    catalog = Catalog.open(settings.catalog_location)
    try:
        found = startup.recover(settings, catalog)
    finally:
        catalog.engine.dispose()
    assert found.recoveries == 2
    assert not dead.exists() and not in_tmp.exists()
    assert alive.is_dir() and serving.is_dir() and other.is_dir()
