"""Pure builders of PostgreSQL client command lines (``*_command`` -> ``list[str]``).

No process is started here; :mod:`pgvault.postgres.runner` executes what these return.
Connection strings passed here never hold a password (see :class:`ConnInfo.dsn`).
Flags follow the PostgreSQL 15-18 documentation of pg_dump, pg_restore, psql, pg_dumpall.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from pgvault.errors import ConfigError

FORMAT_FLAG = {"custom": "c", "plain": "p", "directory": "d"}


def pg_dump_command(
    pg_dump: Path,
    dsn: str,
    *,
    dump_format: str,
    compress: str | None = None,
    jobs: int = 1,
    tables: Sequence[str] = (),
    exclude_tables: Sequence[str] = (),
    schemas: Sequence[str] = (),
    snapshot: str | None = None,
    output_dir: Path | None = None,
) -> list[str]:
    """``pg_dump`` writing to stdout (custom, plain) or to ``output_dir`` (directory).

    Args:
        dump_format: ``custom``, ``plain`` or ``directory`` (pg_dump ``-F``).
        compress: pg_dump ``--compress`` value, e.g. ``"0"``, ``"zstd:3"``, ``"gzip:6"``;
            None keeps pg_dump's default.
        jobs: parallel workers (``-j``), directory format only.
        tables/exclude_tables/schemas: pg_dump ``-t``/``-T``/``-n`` patterns.
        snapshot: an exported snapshot id (``--snapshot``) so pgvault can count rows in
            the very same snapshot.
    """
    argv = [str(pg_dump), f"--dbname={dsn}", f"--format={FORMAT_FLAG[dump_format]}"]
    if compress is not None:
        argv.append(f"--compress={compress}")
    if dump_format == "directory":
        if output_dir is None:
            raise ConfigError("the directory format needs an output directory")
        argv.append(f"--file={output_dir}")
        if jobs > 1:
            argv.append(f"--jobs={jobs}")
    argv += [f"--table={t}" for t in tables]
    argv += [f"--exclude-table={t}" for t in exclude_tables]
    argv += [f"--schema={s}" for s in schemas]
    if snapshot is not None:
        argv.append(f"--snapshot={snapshot}")
    return argv


def pg_dumpall_globals_command(pg_dumpall: Path, dsn: str, *, role_passwords: bool) -> list[str]:
    """``pg_dumpall --globals-only`` (roles, tablespaces) to stdout.

    ``role_passwords=False`` adds ``--no-role-passwords``, needed when not a superuser
    (pg_authid is unreadable then).
    """
    argv = [str(pg_dumpall), f"--dbname={dsn}", "--globals-only"]
    if not role_passwords:
        argv.append("--no-role-passwords")
    return argv


def pg_restore_command(
    pg_restore: Path,
    *,
    dsn: str | None = None,
    archive: Path | None = None,
    jobs: int = 1,
    clean: bool = False,
    no_owner: bool = False,
    no_privileges: bool = False,
    single_transaction: bool = False,
    exit_on_error: bool = False,
    list_only: bool = False,
    to_stdout: bool = False,
    verbose: bool = False,
) -> list[str]:
    """``pg_restore`` from ``archive`` (a file or directory) or from stdin when None.

    Args:
        dsn: the target database; None with ``to_stdout``/``list_only``.
        jobs: ``--jobs``, only valid with a seekable archive file or a directory.
        clean: ``--clean --if-exists`` (drop objects before recreating them).
        single_transaction: ``--single-transaction`` (implies exit on error; not with jobs).
        list_only: ``--list`` prints the archive's table of contents.
        to_stdout: ``--file=-`` emits the archive as plain SQL.
        verbose: ``--verbose``: one stderr line per TOC entry (a restore's progress).
    """
    argv = [str(pg_restore)]
    if verbose:
        argv.append("--verbose")
    if list_only:
        argv.append("--list")
    elif to_stdout:
        argv.append("--file=-")
    elif dsn is not None:
        argv.append(f"--dbname={dsn}")
    if jobs > 1:
        argv.append(f"--jobs={jobs}")
    if clean:
        argv += ["--clean", "--if-exists"]
    if no_owner:
        argv.append("--no-owner")
    if no_privileges:
        argv.append("--no-privileges")
    if single_transaction:
        argv.append("--single-transaction")
    if exit_on_error:
        argv.append("--exit-on-error")
    if archive is not None:
        argv.append(str(archive))
    return argv


def psql_command(
    psql: Path,
    dsn: str,
    *,
    file: Path | None = None,
    command: str | None = None,
    single_transaction: bool = False,
) -> list[str]:
    """``psql`` that stops at the first error (``ON_ERROR_STOP=1``), reading stdin by default.

    Args:
        file: an SQL file (``--file``); None reads stdin.
        command: one SQL command (``--command``) instead of a file.
        single_transaction: ``--single-transaction``: all or nothing.
    """
    argv = [str(psql), "--no-psqlrc", "--quiet", "--set=ON_ERROR_STOP=1", f"--dbname={dsn}"]
    if single_transaction:
        argv.append("--single-transaction")
    if command is not None:
        argv.append(f"--command={command}")
    elif file is not None:
        argv.append(f"--file={file}")
    return argv
