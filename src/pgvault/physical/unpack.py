"""Turning stored base backups back into a data directory.

A full backup is streamed from storage through sha256 -> [age] -> zstd into Python's
``tarfile`` with the ``data`` extraction filter (PEP 706: no absolute paths, no ``..``, no
links out of the directory, no device files), so an object from storage can never write
outside the target. Its stored sha256 is compared with the catalog's before the directory
is used. An incremental chain is unpacked backup by backup into a work directory, then
``pg_combinebackup`` (PostgreSQL 17+) writes the data directory.
"""

from __future__ import annotations

import io
import logging
import shutil
import tarfile
from collections.abc import Sequence
from pathlib import Path

from pgvault import storage
from pgvault.catalog.physical import PhysicalBackupRecord
from pgvault.config.settings import Settings
from pgvault.dumps.layers import DecryptHook
from pgvault.errors import ArchiveError
from pgvault.physical.stream import ReadChain
from pgvault.postgres import runner, tools
from pgvault.postgres.physical_commands import pg_combinebackup_command

log = logging.getLogger(__name__)

READ_BUFFER = 4 * 1024 * 1024  # bytes


def prepare_directory(path: Path) -> None:
    """Create ``path`` with mode 0700 (an existing empty directory is fine).

    Raises:
        ArchiveError: it exists and is not an empty directory (nothing is touched).
    """
    if path.exists():
        if not path.is_dir() or any(path.iterdir()):
            raise ArchiveError(f"{path} exists and is not empty: restore into a new directory")
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.chmod(0o700)


def unpack(
    settings: Settings, record: PhysicalBackupRecord, into: Path, decrypt: DecryptHook | None
) -> None:
    """Extract one stored base backup into the empty directory ``into``.

    Raises:
        NotFound: the object is gone from storage.
        ArchiveError: it is corrupt (sha256 differs, bad zstd or tar), encrypted without an
            identity, or holds a member the ``data`` filter refuses.
    """
    store = storage.resolve(settings, record.storage)
    chain = ReadChain(
        store.open_read(record.storage_key),
        encrypted=record.encrypted,
        decrypt=decrypt,
        size=record.size_bytes,
        sha256=record.sha256,
        label=f"base backup {record.id}",
    )
    with chain, io.BufferedReader(chain, READ_BUFFER) as buffered:
        try:
            with tarfile.open(fileobj=buffered, mode="r|") as tar:
                tar.extractall(into, filter="data")
        except (tarfile.TarError, OSError) as exc:
            raise ArchiveError(f"base backup {record.id} cannot be unpacked: {exc}") from exc
        while buffered.read(READ_BUFFER):
            pass
        chain.check()
    for sub in ("pg_wal", "pg_wal/archive_status"):
        (into / sub).mkdir(mode=0o700, exist_ok=True)
    log.info("unpacked base backup %s into %s", record.id, into)


def restore_chain(
    settings: Settings,
    chain: Sequence[PhysicalBackupRecord],
    into: Path,
    work: Path,
    decrypt: DecryptHook | None,
    major: int,
) -> None:
    """Write the data directory of ``chain`` (a full backup, then its incrementals, oldest
    first) into the empty directory ``into``.

    Raises:
        ArchiveError: a backup is corrupt or unreadable.
        ToolError: pg_combinebackup is missing or failed.
    """
    if len(chain) == 1:
        unpack(settings, chain[0], into, decrypt)
        return
    parts = []
    try:
        for index, record in enumerate(chain):
            part = work / f"chain-{index:02d}"
            prepare_directory(part)
            unpack(settings, record, part, decrypt)
            parts.append(part)
        tool = tools.choose_exact("pg_combinebackup", major, settings.bin_dir)
        into.rmdir()  # pg_combinebackup creates the output directory itself
        runner.run(pg_combinebackup_command(tool.path, parts, into), timeout=None)
        into.chmod(0o700)
        log.info("combined %d base backups into %s", len(chain), into)
    finally:
        for part in parts:
            shutil.rmtree(part, ignore_errors=True)
        into.mkdir(mode=0o700, exist_ok=True)
