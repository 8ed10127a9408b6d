"""The restore policy: one set of guards, checked inside every restore whoever asks for it
(the CLI, the API, scheduled drills, the web UI). Nothing is touched before they all pass.

Per database (``[databases.NAME]`` in the config):

* environment guard: a database configured with an ``environment`` may be restored only by
  a pgvault process running in that environment (``PGVAULT_ENVIRONMENT``);
* confirmation: the caller must give the target database's name (its config name or its
  PostgreSQL name), typed by a person or passed explicitly by a script;
* ``restore_passkey_hash``: the caller's passkey must match (argon2, constant time); wrong
  passkeys are throttled per (database, client) pair like logins
  (:mod:`pgvault.throttle`: growing delays, then 429 / exit 13 for a while);
* ``require_recent_backup_minutes``: a completed backup of the target from this environment
  must be newer than N minutes, unless the restore takes its automatic pre-restore backup
  of the existing target (which then is that recent backup).
"""

from __future__ import annotations

from datetime import timedelta

from pgvault import runtime, throttle
from pgvault.catalog import Catalog
from pgvault.config.settings import Settings
from pgvault.databases import DatabaseTarget
from pgvault.errors import Refused
from pgvault.passwords import verify_secret


def applicable(settings: Settings, target: DatabaseTarget) -> list[str]:
    """The guards that apply to a restore into ``target``, in words (for previews)."""
    found = ["confirmation: type the database name"]
    if target.environment is not None:
        found.append(f"environment: only a pgvault running in {target.environment!r}")
    if target.settings.restore_passkey_hash is not None:
        found.append("passkey: the database's restore passkey")
    minutes = target.settings.require_recent_backup_minutes
    if minutes is not None:
        found.append(f"recent backup: a completed backup newer than {minutes} minutes")
    return found


def check_environment(settings: Settings, target: DatabaseTarget) -> None:
    """The environment guard alone (also used before a preview).

    Raises:
        Refused: ``target`` belongs to another environment than this process.
    """
    wanted = target.environment
    if wanted is not None and settings.environment != wanted:
        have = settings.environment or "unset"
        raise Refused(
            f"database {target.name!r} belongs to environment {wanted!r} but this pgvault runs "
            f"in {have!r}: restore it from a pgvault with PGVAULT_ENVIRONMENT={wanted}"
        )


def check(
    settings: Settings,
    catalog: Catalog,
    target: DatabaseTarget,
    *,
    confirm: str | None,
    passkey: str | None,
    safety_backup: bool,
    target_exists: bool = True,
    client: str | None = None,
) -> None:
    """Apply every guard of a restore into ``target``.

    Args:
        confirm: the name the caller typed or passed.
        passkey: the passkey the caller gave, if any.
        safety_backup: whether the restore will back up the existing target first.
        target_exists: whether the target database exists now (no safety backup otherwise).
        client: who asks from where (``token:ci@10.0.0.7``), for the passkey's throttling.

    Raises:
        Refused: a guard refuses (the message says which and what to do); a wrong passkey
            is ``Invalid restore passkey``.
        Throttled: too many wrong passkeys from this client lately.
    """
    check_environment(settings, target)
    if confirm not in (target.name, target.conn.dbname):
        raise Refused(
            f"confirmation does not match: give the database name {target.conn.dbname!r} "
            "to restore into it"
        )
    wanted = target.settings.restore_passkey_hash
    if wanted is not None:
        key = throttle.pair_key("passkey", target.name, client)
        throttle.check(catalog, key, "wrong restore passkeys")
        if not verify_secret(passkey or "", wanted):
            throttle.failed(settings, catalog, key, f"restores of {target.name}")
            raise Refused("Invalid restore passkey: give the passkey configured for this database")
        throttle.succeeded(catalog, key)
    minutes = target.settings.require_recent_backup_minutes
    if minutes is not None and not (safety_backup and target_exists):
        since = runtime.now() - timedelta(minutes=minutes)
        newest = catalog.list_backups(
            database=target.name, environment=settings.environment, status="completed", limit=1
        )
        if not newest or newest[0].started_at < since:
            raise Refused(
                f"no completed backup of {target.name!r} in the last {minutes} minutes: "
                "take one first, or keep the automatic pre-restore backup on"
            )
