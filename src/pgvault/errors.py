"""The exception tree of pgvault.

Every error pgvault raises on purpose derives from :class:`PgvaultError`, whose
message is one line that says what went wrong and what to do. Shells (the CLI,
later the API) map these classes to exit codes and HTTP statuses in one place.

::

    PgvaultError
    ├── ConfigError          bad settings, bad arguments, unknown database name
    │   └── AlreadyExists    the name is taken (a user, the first owner)
    ├── ToolError            a PostgreSQL client tool is missing, too old, or failed
    ├── ConnectionFailed     the server cannot be reached or refused the credentials
    ├── DatabaseError        a query on a backed-up or restored server failed
    ├── StorageError         a storage target failed (missing, unwritable, I/O error)
    ├── CatalogError         the catalog database failed
    ├── NotFound             no such backup, object or database
    ├── ArchiveError         a file is not a dump pgvault can read, or is corrupt
    ├── BackupError          a backup run failed (carries the pg_dump stderr tail)
    ├── RestoreError         a restore failed; the live database was left as it was
    ├── VerifyError          a verification found a mismatch
    ├── Refused              a guard refused the operation (environment, confirmation)
    ├── Busy                 the same work is already running (per-database lock held)
    ├── TooLarge             an upload is over the configured size limit
    └── AuthError            missing, bad or expired credentials (the service)
        ├── PermissionDenied the caller's role is too low for the operation
        └── Throttled        too many failed logins: refused for a while
"""

from __future__ import annotations


class PgvaultError(Exception):
    """Root of pgvault's errors; ``str(err)`` is the one-line message for users."""

    exit_code = 1


class ConfigError(PgvaultError):
    """Invalid settings or arguments."""

    exit_code = 2


class AlreadyExists(ConfigError):
    """The thing to create exists already (a user name; ``setup`` after the first user)."""

    exit_code = 2


class ToolError(PgvaultError):
    """A PostgreSQL client tool is missing, unsuitable, or exited with an error."""

    exit_code = 3


class ConnectionFailed(PgvaultError):
    """A PostgreSQL server cannot be reached, or refused the credentials."""

    exit_code = 4


class DatabaseError(PgvaultError):
    """A query on a backed-up or restored server failed."""

    exit_code = 4


class StorageError(PgvaultError):
    """A storage target cannot be read or written."""

    exit_code = 5


class CatalogError(PgvaultError):
    """The catalog database cannot be opened, migrated or written."""

    exit_code = 5


class NotFound(PgvaultError):
    """No such backup, stored object or database."""

    exit_code = 6


class ArchiveError(PgvaultError):
    """A file is not a dump pgvault can read, or its bytes do not match the catalog."""

    exit_code = 7


class BackupError(PgvaultError):
    """A backup run failed; the catalog row is marked ``failed``."""

    exit_code = 8


class RestoreError(PgvaultError):
    """A restore failed; the live database was left as it was."""

    exit_code = 9


class VerifyError(PgvaultError):
    """A verification found that a backup does not match what the catalog recorded."""

    exit_code = 10


class Refused(PgvaultError):
    """A safety guard refused the operation (environment guard, confirmation)."""

    exit_code = 11


class Busy(PgvaultError):
    """The same work (a backup of this database, a scheduled job) is already running."""

    exit_code = 12


class TooLarge(PgvaultError):
    """An upload is larger than the configured limit (``api.max_upload_bytes``)."""

    exit_code = 2


class AuthError(PgvaultError):
    """Missing, malformed, expired or revoked credentials; or a wrong password."""

    exit_code = 13


class PermissionDenied(AuthError):
    """The caller is known but its role is too low for the operation."""

    exit_code = 13


class Throttled(AuthError):
    """Too many failed logins for a user or an address: refused until ``retry_after``."""

    exit_code = 13

    def __init__(self, message: str, retry_after: int = 60) -> None:
        super().__init__(message)
        self.retry_after = retry_after
