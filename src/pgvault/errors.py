"""The exception tree of pgvault, and the exit code of each class.

Every error pgvault raises on purpose derives from :class:`PgvaultError`, whose message is one
line that says what went wrong and what to do, in words that fit every shell (it never names a
command-line flag: the CLI adds its own hints). Library code raises these, never ``ValueError``;
third-party errors are translated at the boundary (``raise StorageError(...) from exc``).
The CLI maps a class to its exit code through :data:`EXIT_CODES` (:func:`exit_code`), the API
and the web pages to an HTTP status through :data:`HTTP_STATUSES` (:func:`http_status`): each
in exactly one place.

::

    PgvaultError                   exit  1
    ├── ConfigError                      2  bad settings, bad arguments, unknown database name
    │   └── AlreadyExists                2  the name is taken (a user, the first owner)
    ├── ToolError                        3  a PostgreSQL client tool is missing, too old, or failed
    ├── ConnectionFailed                 4  the server cannot be reached or refused the credentials
    ├── DatabaseError                    4  a query on a backed-up or restored server failed
    ├── StorageError                     5  a storage target failed (missing, unwritable, I/O error)
    ├── CatalogError                     5  the catalog database failed
    ├── NotFound                         6  no such backup, object or database
    ├── ArchiveError                     7  not a dump pgvault can read, cut short, or corrupt
    ├── BackupError                      8  a backup run failed (carries the pg_dump stderr tail)
    ├── RestoreError                     9  a restore failed; the live database was left as it was
    ├── VerifyError                     10  a verification found a mismatch
    ├── Refused                         11  a guard refused (environment, confirmation, passkey)
    ├── Busy                            12  the same work is already running (a lock is held)
    ├── AuthError                       13  missing, bad or expired credentials (the service)
    │   ├── PermissionDenied            13  the caller's role is too low for the operation
    │   └── Throttled                   13  too many failed attempts: refused for a while
    ├── TooLarge                        14  an upload is over the configured size limit
    └── Cancelled                      130  the caller asked the run to stop (as for SIGINT)
"""

from __future__ import annotations


class PgvaultError(Exception):
    """Root of pgvault's errors; ``str(err)`` is the one-line message for users.

    ``needs`` names, in the shells' common words, the input that would fix it (``identity``,
    ``database``, ``target``, ``storage``, ``config``, ``backup``, ``server``): each shell
    turns it into its own hint (the CLI names its flag), so domain messages name none.
    """

    def __init__(self, message: str = "", *, needs: str | None = None) -> None:
        super().__init__(message)
        self.needs = needs


class ConfigError(PgvaultError):
    """Invalid settings or arguments."""


class AlreadyExists(ConfigError):
    """The thing to create exists already (a user name; ``setup`` after the first user)."""


class ToolError(PgvaultError):
    """A PostgreSQL client tool is missing, unsuitable, or exited with an error."""


class ConnectionFailed(PgvaultError):
    """A PostgreSQL server cannot be reached, or refused the credentials."""


class DatabaseError(PgvaultError):
    """A query on a backed-up or restored server failed."""


class StorageError(PgvaultError):
    """A storage target cannot be read or written."""


class CatalogError(PgvaultError):
    """The catalog database cannot be opened, migrated or written."""


class NotFound(PgvaultError):
    """No such backup, stored object or database."""


class ArchiveError(PgvaultError):
    """A file is not a dump pgvault can read, or its bytes do not match the catalog."""


class BackupError(PgvaultError):
    """A backup run failed; the catalog row is marked ``failed``."""


class RestoreError(PgvaultError):
    """A restore failed; the live database was left as it was."""


class VerifyError(PgvaultError):
    """A verification found that a backup does not match what the catalog recorded."""


class Refused(PgvaultError):
    """A safety guard refused the operation (environment, confirmation, passkey, recency)."""


class Busy(PgvaultError):
    """The same work (a backup of this database, a scheduled job) is already running."""


class AuthError(PgvaultError):
    """Missing, malformed, expired or revoked credentials; or a wrong password."""


class PermissionDenied(AuthError):
    """The caller is known but its role is too low for the operation."""


class Throttled(AuthError):
    """Too many failed attempts (logins, passkeys): refused for ``retry_after`` seconds."""

    def __init__(self, message: str, retry_after: int = 60) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class TooLarge(PgvaultError):
    """An upload is larger than the configured limit (``api.max_upload_bytes``)."""


class Cancelled(PgvaultError):
    """The caller asked the run to stop (a job cancelled, the scheduler shutting down)."""


EXIT_CODES: dict[type[PgvaultError], int] = {
    PgvaultError: 1,
    ConfigError: 2,
    AlreadyExists: 2,
    ToolError: 3,
    ConnectionFailed: 4,
    DatabaseError: 4,
    StorageError: 5,
    CatalogError: 5,
    NotFound: 6,
    ArchiveError: 7,
    BackupError: 8,
    RestoreError: 9,
    VerifyError: 10,
    Refused: 11,
    Busy: 12,
    AuthError: 13,
    PermissionDenied: 13,
    Throttled: 13,
    TooLarge: 14,
    Cancelled: 130,
}
"""Exit code of each class (the README's table is this one); subclasses not listed take
their nearest listed base's code."""


def exit_code(exc: PgvaultError) -> int:
    """The process exit code for ``exc``: its class's entry in :data:`EXIT_CODES`, else the
    nearest base class's."""
    for cls in type(exc).__mro__:
        if cls in EXIT_CODES:
            return EXIT_CODES[cls]
    return 1


# Most specific first: the first class an error is an instance of decides.
HTTP_STATUSES: list[tuple[type[PgvaultError], int, str]] = [
    (Throttled, 429, "too many requests"),
    (PermissionDenied, 403, "forbidden"),
    (AuthError, 401, "unauthorized"),
    (AlreadyExists, 409, "conflict"),
    (ConfigError, 400, "bad request"),
    (TooLarge, 413, "payload too large"),
    (ArchiveError, 400, "not a dump"),
    (NotFound, 404, "not found"),
    (Refused, 403, "refused"),
    (Busy, 409, "busy"),
    (Cancelled, 409, "cancelled"),
    (ConnectionFailed, 502, "database unreachable"),
    (VerifyError, 422, "verification failed"),
    (PgvaultError, 500, "operation failed"),
]
"""HTTP status and short title of each class, for the API's JSON errors and the web pages."""


def http_status(exc: PgvaultError) -> tuple[int, str]:
    """``(HTTP status, error title)`` of ``exc``: the first entry of :data:`HTTP_STATUSES`
    it is an instance of."""
    for cls, status, title in HTTP_STATUSES:
        if isinstance(exc, cls):
            return status, title
    return 500, "operation failed"
