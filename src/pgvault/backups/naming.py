"""Backup ids and storage key templates.

A template is a ``str.format`` string; times accept ``strftime`` specs, as in the seeds'
``{app}-{environment}-on-{started:%Y-%m-%d-at-%I-%M-%S-%p}-{tz}.dump``. Fields:

``id``, ``database`` (config name), ``app`` (same), ``dbname`` (PostgreSQL name),
``environment``, ``started`` (local time in the template's time zone), ``started_utc``,
``tz`` (zone abbreviation such as ``IST``), ``format``, ``ext`` (``.dump``, ``.dump.zst``,
``.sql.gz``, ``.tar``, ...), ``trigger``.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pgvault.errors import ConfigError, StorageError
from pgvault.storage.base import validate_key

FIELDS = (
    "id",
    "database",
    "app",
    "dbname",
    "environment",
    "started",
    "started_utc",
    "tz",
    "format",
    "ext",
    "trigger",
)


def new_id(now: datetime | None = None) -> str:
    """A sortable, unique-enough backup id: ``20261121-053012-7f3a`` (UTC time + 16 random bits)."""
    moment = (now or datetime.now(UTC)).astimezone(UTC)
    return f"{moment:%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"


def zone(name: str) -> ZoneInfo:
    """The IANA time zone ``name``.

    Raises:
        ConfigError: unknown zone.
    """
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ConfigError(
            f"unknown time zone {name!r}: use an IANA name such as Asia/Kolkata"
        ) from exc


def render_key(template: str, *, started: datetime, timezone: str, **fields: str | None) -> str:
    """Render a storage key from ``template``; ``started`` is an aware UTC datetime.

    Raises:
        ConfigError: the template names an unknown field or is malformed.
        StorageError: the result is not a safe key (e.g. contains ``..``).
    """
    local = started.astimezone(zone(timezone))
    values = {k: ("" if v is None else v) for k, v in fields.items()}
    values.setdefault("app", values.get("database", ""))
    try:
        key = template.format(
            started=local, started_utc=started.astimezone(UTC), tz=local.tzname() or "", **values
        )
    except KeyError as exc:
        raise ConfigError(
            f"unknown field {exc} in name template {template!r}: use {', '.join(FIELDS)}"
        ) from exc
    except (ValueError, IndexError) as exc:
        raise ConfigError(f"invalid name template {template!r}: {exc}") from exc
    try:
        return validate_key(key)
    except StorageError as exc:
        raise StorageError(f"name template {template!r} gave an unsafe key: {exc}") from exc


def extension(dump_format: str, compression: str, compressed_by: str | None) -> str:
    """File extension of a stored backup, e.g. ``.dump``, ``.dump.zst``, ``.sql.gz``, ``.tar``."""
    base = {"custom": ".dump", "plain": ".sql", "directory": ".tar"}[dump_format]
    if compressed_by == "pgvault" and compression != "none":
        base += {"zstd": ".zst", "gzip": ".gz"}[compression]
    return base
