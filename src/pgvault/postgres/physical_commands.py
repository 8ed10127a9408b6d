"""Pure builders of the command lines of PostgreSQL's physical-backup and server tools.

``pg_receivewal``, ``pg_basebackup``, ``pg_combinebackup``, ``pg_verifybackup``, ``pg_ctl``
and ``pg_controldata``: each ``*_command`` returns ``list[str]`` and starts nothing (run
them with :mod:`pgvault.postgres.runner`). Connection strings never hold a password.
Flags follow the PostgreSQL 15-18 documentation of each program ("PostgreSQL Client
Applications" and "PostgreSQL Server Applications").
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from pathlib import Path


def pg_receivewal_command(
    pg_receivewal: Path,
    dsn: str,
    directory: Path,
    *,
    slot: str,
    status_interval: int = 2,
) -> list[str]:
    """``pg_receivewal`` streaming into ``directory`` on replication slot ``slot``.

    ``--no-loop``: exit on a lost connection so pgvault restarts it with backoff (and sees
    why it stopped); ``--no-password``: never prompt; ``--verbose`` logs each finished
    segment. The in-progress segment is ``<name>.partial`` and renamed when complete.

    Args:
        status_interval: seconds between status packets to the server (``-s``).
    """
    return [
        str(pg_receivewal),
        f"--dbname={dsn}",
        f"--directory={directory}",
        f"--slot={slot}",
        "--no-loop",
        "--no-password",
        f"--status-interval={status_interval}",
        "--verbose",
    ]


def create_slot_command(pg_receivewal: Path, dsn: str, *, slot: str) -> list[str]:
    """``pg_receivewal --create-slot --if-not-exists``: a physical replication slot."""
    return [
        str(pg_receivewal),
        f"--dbname={dsn}",
        f"--slot={slot}",
        "--create-slot",
        "--if-not-exists",
        "--no-password",
    ]


def pg_basebackup_command(
    pg_basebackup: Path,
    dsn: str,
    *,
    label: str,
    incremental_manifest: Path | None = None,
    max_rate: str | None = None,
) -> list[str]:
    """``pg_basebackup`` writing one tar stream to stdout, without WAL.

    ``-D - -Ft -X none``: the tar of the main data directory on stdout with the
    ``backup_manifest`` as its last member; the WAL comes from the archive.
    ``--checkpoint=fast`` starts at once; ``--manifest-checksums=SHA256`` lets
    ``pg_verifybackup`` prove every file.

    Args:
        label: the backup label (``-l``).
        incremental_manifest: the previous backup's manifest for ``--incremental`` (17+).
        max_rate: transfer limit such as ``"100M"`` (``-r``).
    """
    argv = [
        str(pg_basebackup),
        f"--dbname={dsn}",
        "--pgdata=-",
        "--format=tar",
        "--wal-method=none",
        "--checkpoint=fast",
        "--manifest-checksums=SHA256",
        f"--label={label}",
        "--no-password",
        "--verbose",
    ]
    if incremental_manifest is not None:
        argv.append(f"--incremental={incremental_manifest}")
    if max_rate is not None:
        argv.append(f"--max-rate={max_rate}")
    return argv


def pg_combinebackup_command(
    pg_combinebackup: Path, chain: Sequence[Path], output: Path
) -> list[str]:
    """``pg_combinebackup -o OUTPUT FULL INCR1 INCR2 ...`` (17+), oldest first.

    ``--no-sync``: the server syncs the data directory when recovery starts.
    """
    return [str(pg_combinebackup), "--no-sync", f"--output={output}", *map(str, chain)]


def pg_verifybackup_command(pg_verifybackup: Path, directory: Path) -> list[str]:
    """``pg_verifybackup --no-parse-wal --quiet DIR``: every file against the manifest."""
    return [str(pg_verifybackup), "--no-parse-wal", "--quiet", str(directory)]


def pg_ctl_start_command(
    pg_ctl: Path, datadir: Path, log_file: Path, settings: Mapping[str, str]
) -> list[str]:
    """``pg_ctl start`` without waiting (``-W``); ``settings`` become ``-c name=value``.

    pg_ctl hands ``-o`` to a shell, so every value is quoted with :func:`shlex.quote`.
    """
    options = " ".join(f"-c {shlex.quote(f'{k}={v}')}" for k, v in settings.items())
    return [
        str(pg_ctl),
        "start",
        f"--pgdata={datadir}",
        f"--log={log_file}",
        "--no-wait",
        f"--options={options}",
    ]


def pg_ctl_stop_command(
    pg_ctl: Path, datadir: Path, *, mode: str = "fast", timeout: int = 120
) -> list[str]:
    """``pg_ctl stop -m fast -w -t SECONDS``."""
    return [
        str(pg_ctl),
        "stop",
        f"--pgdata={datadir}",
        f"--mode={mode}",
        "--wait",
        f"--timeout={timeout}",
    ]


def pg_controldata_command(pg_controldata: Path, datadir: Path) -> list[str]:
    """``pg_controldata DATADIR`` (reads ``global/pg_control``; no server needed)."""
    return [str(pg_controldata), str(datadir)]
