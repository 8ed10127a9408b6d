"""Turning stored base backups back into a data directory.

A full backup is streamed from storage through sha256 -> [age] -> zstd into
:class:`~pgvault.physical.tarscan.TarExtractor`, which accepts only regular files and
directories with safe relative names (no links, no devices), so an object from storage can
never write outside the target (``tarfile`` in stream mode copies its buffers for every
member: 10x slower than ``zstd -dc | tar -x`` on a 330 MB backup). Its stored sha256 is
compared with the catalog's before the directory is used. An incremental chain is unpacked
backup by backup into a work directory, then ``pg_combinebackup`` (PostgreSQL 17+) writes
the data directory.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Sequence
from pathlib import Path

from pgvault import storage
from pgvault.catalog.physical import PhysicalBackupRecord
from pgvault.config.settings import Settings
from pgvault.dumps.layers import DecryptHook
from pgvault.errors import ArchiveError
from pgvault.physical.stream import ReadChain
from pgvault.physical.tarscan import TarExtractor
from pgvault.postgres import runner, tools
from pgvault.postgres.physical_commands import pg_combinebackup_command

log = logging.getLogger(__name__)

READ_BUFFER = 1024 * 1024  # bytes


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
    extractor = TarExtractor(into)
    with chain:
        try:
            while chunk := chain.read(READ_BUFFER):
                extractor.feed(chunk)
            extractor.close()
        except OSError as exc:
            raise ArchiveError(f"base backup {record.id} cannot be unpacked: {exc}") from exc
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
