"""Replaying a backup's globals (roles, tablespaces: ``pg_dumpall --globals-only``) on the
target server before a restore, so the dump's owners and grants exist there.

The stored file is checked against the sha256 recorded at backup time before anything reads
it as SQL, then checked whole for psql meta-commands
(:mod:`pgvault.dumps.psqlguard`), and only then fed to a psql in restricted mode.
"""

from __future__ import annotations

import hashlib
import io

from pgvault import storage
from pgvault.catalog.records import BackupRecord
from pgvault.config.settings import Settings
from pgvault.dumps import psqlguard
from pgvault.dumps.layers import DecryptHook, open_layers
from pgvault.errors import ArchiveError, PgvaultError
from pgvault.postgres import runner
from pgvault.postgres.commands import psql_command
from pgvault.postgres.conninfo import ConnInfo
from pgvault.restores.loading import Tools


def read_globals(settings: Settings, record: BackupRecord, decrypt: DecryptHook | None) -> bytes:
    """The backup's globals SQL, after its stored bytes matched the recorded sha256 and the
    SQL was found free of psql meta-commands.

    Raises:
        ArchiveError: no recorded sha256, bytes that differ from it, or a meta-command.
    """
    if not record.globals_sha256:
        raise ArchiveError(
            f"backup {record.id}'s globals file has no recorded sha256, so it cannot be "
            "trusted: restore without the globals (create the roles first)"
        )
    store = storage.resolve(settings, record.storage)
    sealed = store.read_bytes(record.globals_key or "")
    if hashlib.sha256(sealed).hexdigest() != record.globals_sha256:
        raise ArchiveError(
            f"backup {record.id}'s globals file differs from its recorded sha256 (changed "
            "after the backup): nothing was run; restore without the globals"
        )
    text = open_layers(io.BytesIO(sealed), decrypt).stream.read()
    psqlguard.check_text([text])
    return text


def apply_globals(text: bytes, info: ConnInfo, tool_set: Tools) -> list[str]:
    """Run globals SQL (from :func:`read_globals`) on the target server, in a restricted
    psql. Existing roles are expected there: "already exists" errors are skipped, others
    become warnings.

    Raises:
        ToolError: psql has no restricted mode.
    """
    argv = psql_command(tool_set.checked_psql(), info.with_dbname("postgres").dsn())
    argv = [a for a in argv if a != "--set=ON_ERROR_STOP=1"]
    guarded = io.BytesIO()
    guard = psqlguard.PsqlGuard(guarded, psqlguard.restrict_key())
    guard.write(text)
    guard.close()
    child_warnings: list[str] = []
    try:
        runner.run(argv, env=info.child_env(), input_bytes=guarded.getvalue())
    except PgvaultError as exc:
        child_warnings.append(f"globals: {exc}")
    return [w for w in child_warnings if "already exists" not in w]
