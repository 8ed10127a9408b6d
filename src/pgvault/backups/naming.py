"""Storage keys of backups: name templates, rendered in a time zone, and file extensions.

A template is a ``str.format`` string; times accept ``strftime`` specs, as in the seeds'
``{app}-{environment}-on-{started:%Y-%m-%d-at-%I-%M-%S-%p}-{tz}.dump``. Fields:

``id``, ``database`` (config name), ``app`` (same), ``dbname`` (PostgreSQL name),
``environment``, ``started`` (local time in the template's time zone), ``started_utc``,
``tz`` (zone abbreviation such as ``IST``), ``format``, ``ext`` (``.dump``, ``.dump.zst``,
``.sql.gz``, ``.tar``, ...), ``trigger``. Only plain field names are allowed (no attribute
or index access such as ``{started.__class__}``), so a template can never reach into objects.
"""

from __future__ import annotations

import string
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
    check_template(template)
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


def check_template(template: str) -> None:
    """Refuse a template that is malformed or uses anything but plain :data:`FIELDS`.

    Raises:
        ConfigError: the template is malformed, names an unknown field, or accesses an
            attribute or index of one (``{started.year}``, ``{id[0]}``).
    """
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ConfigError(f"invalid name template {template!r}: {exc}") from exc
    for _text, field, _spec, _conversion in parts:
        if field is None:
            continue
        if field in FIELDS:
            continue
        plain = field.split(".", 1)[0].split("[", 1)[0]
        if plain in FIELDS:
            raise ConfigError(
                f"name template {template!r} uses {{{field}}}: only plain field names are "
                f"allowed ({', '.join(FIELDS)})"
            )
        raise ConfigError(
            f"unknown field {field!r} in name template {template!r}: use {', '.join(FIELDS)}"
        )


def storage_key(
    template: str,
    timezone: str,
    *,
    backup_id: str,
    started: datetime,
    database: str,
    dbname: str,
    environment: str | None,
    dump_format: str,
    ext: str,
    trigger: str,
) -> str:
    """The key of one backup: :func:`render_key` with every field filled in the same way for
    pg_dump backups, uploads and every later kind.

    Raises:
        ConfigError, StorageError: as for :func:`render_key`.
    """
    return render_key(
        template,
        started=started,
        timezone=timezone,
        id=backup_id,
        database=database,
        dbname=dbname,
        environment=environment,
        format=dump_format,
        ext=ext,
        trigger=trigger,
    )


def extension(dump_format: str, compression: str, compressed_by: str | None) -> str:
    """File extension of a stored backup, e.g. ``.dump``, ``.dump.zst``, ``.sql.gz``, ``.tar``."""
    base = {"custom": ".dump", "plain": ".sql", "directory": ".tar"}[dump_format]
    if compressed_by == "pgvault" and compression != "none":
        base += {"zstd": ".zst", "gzip": ".gz"}[compression]
    return base


MAX_LABEL_KEY = 64
MAX_LABEL_VALUE = 256
MAX_LABELS = 64


def check_labels(labels: dict[str, str]) -> dict[str, str]:
    """``labels`` if every key is 1-64 characters and every value at most 256 (at most 64
    labels): they are stored in the catalog and in every manifest.

    Raises:
        ConfigError: a key or value is too long, a key empty, or too many labels.
    """
    if len(labels) > MAX_LABELS:
        raise ConfigError(f"a backup takes at most {MAX_LABELS} labels, not {len(labels)}")
    for key, value in labels.items():
        if not key:
            raise ConfigError("a label key may not be empty")
        if len(key) > MAX_LABEL_KEY:
            raise ConfigError(
                f"label key {key[:20]!r}... is longer than {MAX_LABEL_KEY} characters"
            )
        if len(value) > MAX_LABEL_VALUE:
            raise ConfigError(
                f"the value of label {key!r} is longer than {MAX_LABEL_VALUE} characters"
            )
    return labels
