"""Replaying a backup's globals (roles, tablespaces: ``pg_dumpall --globals-only``) on the
target server before a restore, so the dump's owners and grants exist there."""

from __future__ import annotations

import io
import tempfile

from pgvault import storage
from pgvault.catalog.records import BackupRecord
from pgvault.config.settings import Settings
from pgvault.dumps.layers import DecryptHook, open_layers
from pgvault.errors import PgvaultError
from pgvault.postgres import runner
from pgvault.postgres.commands import psql_command
from pgvault.postgres.conninfo import ConnInfo
from pgvault.restores.loading import Tools


def apply_globals(
    settings: Settings,
    record: BackupRecord,
    info: ConnInfo,
    tool_set: Tools,
    decrypt: DecryptHook | None,
) -> list[str]:
    """Run the backup's globals (roles, tablespaces) on the target server first. Existing
    roles are expected there: "already exists" errors are skipped, others become warnings."""
    store = storage.resolve(settings, record.storage)
    sealed = io.BytesIO(store.read_bytes(record.globals_key or ""))
    text = open_layers(sealed, decrypt).stream.read()
    argv = psql_command(tool_set.psql, info.with_dbname("postgres").dsn())
    argv = [a for a in argv if a != "--set=ON_ERROR_STOP=1"]
    child_warnings: list[str] = []
    with tempfile.NamedTemporaryFile("wb", suffix=".sql") as tmp:
        tmp.write(text)
        tmp.flush()
        try:
            runner.run([*argv, f"--file={tmp.name}"], env=info.child_env())
        except PgvaultError as exc:
            child_warnings.append(f"globals: {exc}")
    return [w for w in child_warnings if "already exists" not in w]
