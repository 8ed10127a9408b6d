"""Restore policies of the service, checked before a restore job starts (nothing touched).

Per database, in the config (``[databases.NAME]``):

* ``confirm`` must equal the target database's name (its config name or its dbname);
* ``restore_passkey_hash``: the request's passkey must match (argon2, constant time);
* ``require_recent_backup_minutes``: a completed backup of the target from this
  environment must be newer than N minutes, unless the restore takes its automatic
  pre-restore backup (which then is that recent backup);
* environment guard: only databases of the service's own ``environment`` are targets
  (stricter than the CLI's: a database without an environment is a target only for a
  service without one); backups from any environment may be restored into them.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from pgvault.catalog import Catalog
from pgvault.config.settings import Settings
from pgvault.databases import DatabaseTarget
from pgvault.errors import Refused
from pgvault.service.users import verify_secret


def check_restore(
    settings: Settings,
    catalog: Catalog,
    target: DatabaseTarget,
    *,
    confirm: str,
    passkey: str | None,
    safety_backup: bool,
) -> None:
    """Apply every restore policy of ``target``.

    Raises:
        Refused: a policy refuses (the message says which and what to do); the passkey
            message is ``Invalid restore passkey``.
    """
    service_env = settings.environment
    if target.environment != service_env:
        raise Refused(
            f"database {target.name!r} belongs to environment {target.environment or 'none'!r}"
            f" but this service runs in {service_env or 'none'!r}: restore it from a pgvault "
            "service of that environment"
        )
    if confirm not in (target.name, target.conn.dbname):
        raise Refused(
            f"confirmation does not match: set confirm to the database name {target.name!r}"
        )
    wanted = target.settings.restore_passkey_hash
    if wanted is not None and not verify_secret(passkey or "", wanted):
        raise Refused("Invalid restore passkey: give the passkey configured for this database")
    minutes = target.settings.require_recent_backup_minutes
    if minutes is not None and not safety_backup:
        since = datetime.now(UTC) - timedelta(minutes=minutes)
        newest = catalog.list_backups(
            database=target.name, environment=service_env, status="completed", limit=1
        )
        if not newest or newest[0].started_at < since:
            raise Refused(
                f"no completed backup of {target.name!r} in the last {minutes} minutes: "
                "take one first, or keep the automatic pre-restore backup on"
            )
