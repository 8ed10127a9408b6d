"""``kill -9`` in the middle of a snapshot: nothing is listed, the next command marks the
row interrupted, and the next snapshot completes reusing the blobs already stored (they
are not written again); retention later removes what the killed writer left half-done."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pgvault.catalog import files as rows
from pgvault.config.settings import load_settings
from pgvault.operations import file_retention as retention
from support.filesets import make_tree, toml_str, tree, write_config
from support.vault import PGVAULT, Vault

FILES = 600
SIZE = 64 * 1024


def _blobs(root: Path) -> dict[Path, int]:
    """Committed blob files and their inode numbers."""
    found = {}
    for path in root.rglob("*"):
        if "/blobs/" in path.as_posix() and path.is_file() and not path.name.endswith(".partial"):
            found[path] = path.stat().st_ino
    return found


@pytest.mark.slow
def test_killed_snapshot_lists_nothing_and_its_blobs_are_reused(
    vault: Vault, tmp_path: Path
) -> None:
    src = tmp_path / "uploads"
    make_tree(src, FILES, SIZE)
    config = write_config(
        vault.home,
        f"""
[files.up]
source = {toml_str(str(src))}
workers = 1
""",
    )
    proc = subprocess.Popen(
        [str(PGVAULT), "files", "snapshot", "up"],
        env=vault.cli_env(),
        cwd=vault.home,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while len(_blobs(vault.backups_dir)) < 20 and proc.poll() is None:
            assert time.monotonic() < deadline, "the snapshot never got going"
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the snapshot ended before it was killed"
    stored = _blobs(vault.backups_dir)
    assert 20 <= len(stored) < FILES

    listed = vault.cli("files", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout) == []  # a snapshot without a manifest does not exist
    [killed] = rows.list_snapshots(vault.reopen_catalog(), file_set="up", statuses=("interrupted",))
    assert "died" in (killed.error or "")
    assert not [p for p in vault.backups_dir.rglob("*") if ".manifest." in p.name]

    again = vault.cli("files", "snapshot", "up", "--json")
    assert again.returncode == 0, again.stderr
    result = json.loads(again.stdout)
    assert result["objects"] == FILES
    record = rows.get_snapshot(vault.reopen_catalog(), result["id"])
    assert record.stored_blobs == FILES - len(stored)  # the killed run's blobs were reused
    assert {p: ino for p, ino in _blobs(vault.backups_dir).items() if p in stored} == stored

    settings = load_settings(config, home=vault.home)
    later = datetime.now(UTC) + timedelta(days=3)
    sweep = retention.sweep(settings, vault.catalog, "up", record.storage, now=later)
    assert sweep.deleted_blobs == 0 and sweep.referenced == FILES
    assert not list(vault.backups_dir.rglob("*.partial"))
    out = tmp_path / "out"
    restored = vault.cli("files", "restore", result["id"], "--to", str(out), "--yes")
    assert restored.returncode == 0, restored.stderr
    assert {k: v[0] for k, v in tree(out).items()} == {k: v[0] for k, v in tree(src).items()}
