"""What route modules share: the documented error answers."""

from __future__ import annotations

from typing import Any

from pgvault.api.schemas import ErrorBody

_ERROR = {"model": ErrorBody}
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {**_ERROR, "description": text}
    for code, text in {
        400: "Bad request (also: not a dump)",
        401: "Missing, bad or expired credentials",
        403: "Role too low, or refused by a guard",
        404: "Not found",
        409: "Conflict: already running or exists",
        422: "Invalid request",
        429: "Too many failed logins",
        500: "The operation failed",
        502: "A database is unreachable",
    }.items()
}
