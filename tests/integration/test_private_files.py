"""What pgvault writes is private (issue 9, point 3): with umask 022, the dumps, the
globals files (SCRAM verifiers), manifests, the SQLite catalog (argon2 and token hashes)
and its -wal/-shm files, locks and work directories are 0600 files in 0700 directories,
under PGVAULT_HOME and under a local storage target; ``doctor`` warns about a file that is
readable by others."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from pgvault import backups
from pgvault.backups import BackupRequest
from pgvault.config.settings import load_settings
from support.pgcluster import PgCluster
from support.vault import Janitor, Vault


@pytest.fixture
def umask_022() -> Iterator[None]:
    """The usual umask of a shell (files 0644, directories 0755) for the test."""
    before = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(before)


def _modes(root: Path) -> dict[str, int]:
    found = {".": stat.S_IMODE(root.stat().st_mode)}
    for path in root.rglob("*"):
        found[str(path.relative_to(root))] = stat.S_IMODE(path.lstat().st_mode)
    return found


def _public(modes: dict[str, int]) -> dict[str, str]:
    return {name: oct(mode) for name, mode in modes.items() if mode & 0o077}


def test_backups_catalog_and_locks_are_private_whatever_the_umask(
    pg18: PgCluster, janitor: Janitor, tmp_path: Path, umask_022: None
) -> None:
    db = janitor.new(pg18, "priv")
    pg18.create_database(db)
    pg18.psql("CREATE TABLE t AS SELECT g FROM generate_series(1, 100) g", db)
    home, elsewhere = tmp_path / "home", tmp_path / "target"
    vault = Vault.open(home)
    settings = load_settings(home=home, storage_targets={"other": {"url": str(elsewhere)}})
    try:
        for dump_format, storage in (("directory", None), ("custom", "other"), ("plain", None)):
            request = BackupRequest(
                target=vault.target(pg18, db), dump_format=dump_format, storage=storage
            )
            record = backups.create(settings, vault.catalog, request)
            assert record.globals_key  # the globals file (role verifiers) is there too
        at_home, at_target = _modes(home), _modes(elsewhere)  # -wal exists while open
    finally:
        vault.close()

    assert _public(at_home) == {} and _public(at_target) == {}
    names = set(at_home)
    assert {"catalog.sqlite3", "catalog.sqlite3-wal", "locks", "backups", "tmp"} <= names
    assert any(n.endswith(".globals.sql") for n in names)
    assert any(n.endswith(".manifest.json") for n in at_target)
    for modes in (at_home, at_target):
        for name, mode in modes.items():
            path = (home if modes is at_home else elsewhere) / name
            assert mode == (0o700 if path.is_dir() else 0o600), (name, oct(mode))


def test_doctor_warns_about_files_others_can_read(
    pg18: PgCluster, vault: Vault, janitor: Janitor
) -> None:
    db = janitor.new(pg18, "priv")
    pg18.create_database(db)
    record = backups.create(
        vault.settings, vault.catalog, BackupRequest(target=vault.target(pg18, db))
    )
    vault.close()
    clean = vault.cli("doctor", "--json", cluster=pg18)
    exposed = vault.stored(record)
    exposed.chmod(0o644)

    warned = vault.cli("doctor", "--json", cluster=pg18)

    before = {c["name"]: c for c in json.loads(clean.stdout)}["private files"]
    after = {c["name"]: c for c in json.loads(warned.stdout)}["private files"]
    assert before["ok"], before
    assert not after["ok"] and str(exposed) in after["detail"] and "chmod" in after["detail"]
    assert warned.returncode == 1
