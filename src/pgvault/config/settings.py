"""Settings: frozen pydantic-settings models read from init > ``PGVAULT_*`` > ``pgvault.toml``.

The file is found via ``--config``, then ``PGVAULT_CONFIG``, then ``./pgvault.toml``.
Nested values come from the environment with ``__`` as the separator, e.g.
``PGVAULT_DATABASES__APP__URL``. Secrets (database passwords) are never stored here in
clear: they come from ``PGPASSWORD``, a libpq passfile, or ``password_file``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from pgvault.config.files import FileSetSettings, check_set_name
from pgvault.config.operations import (
    DatabaseNotifySettings,
    FreshnessSettings,
    NotificationSettings,
    RetentionSettings,
    SchedulerSettings,
    ScheduleSettings,
    VerifyScheduleSettings,
)
from pgvault.errors import ConfigError

DumpFormat = Literal["custom", "plain", "directory"]
CompressionMethod = Literal["zstd", "gzip", "none"]
CompressIn = Literal["auto", "pg_dump", "stream"]
RestoreMode = Literal["swap", "clean", "recreate"]

DEFAULT_NAME_TEMPLATE = "{database}/{started:%Y/%m/%d}/{id}{ext}"


class StorageTargetSettings(BaseModel):
    """One named storage target (``[storage_targets.NAME]`` in the config file)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    url: str = Field(description="Where backups go: a path, file:///path (or s3://bucket/prefix).")
    region: str | None = Field(default=None, description="S3 region (S3 targets only).")
    endpoint_url: str | None = Field(
        default=None, description="S3 endpoint for MinIO, R2, Ceph (S3 targets only)."
    )
    path_style: bool = Field(default=False, description="S3 path-style addressing.")
    profile: str | None = Field(default=None, description="AWS profile name (S3 targets only).")
    sse: str | None = Field(
        default=None, description="S3 server-side encryption: AES256 or aws:kms."
    )
    sse_kms_key_id: str | None = Field(default=None, description="KMS key id for aws:kms.")
    storage_class: str | None = Field(default=None, description="S3 storage class.")
    object_lock: bool = Field(
        default=False,
        description="S3 Object Lock: the bucket has Object Lock enabled; give each new object "
        "a retain-until date (object_lock_days, else the period the database's retention "
        "policy implies) and delete every version of a key on deletion.",
    )
    object_lock_days: int | None = Field(
        default=None,
        ge=1,
        description="S3 Object Lock: keep each new object undeletable for this many days "
        "(the bucket must have Object Lock enabled; implies object_lock).",
    )
    object_lock_mode: Literal["GOVERNANCE", "COMPLIANCE"] = Field(
        default="COMPLIANCE", description="S3 Object Lock retention mode."
    )
    part_size_mib: int | None = Field(
        default=None, description="S3 multipart part size in MiB (5..5120; default 8)."
    )
    max_attempts: int | None = Field(
        default=None, ge=1, description="S3 attempts per request, retries included (default 5)."
    )
    read_timeout: float | None = Field(
        default=None, gt=0, description="S3 socket read timeout in seconds (default 60)."
    )


class DatabaseSettings(BaseModel):
    """One database pgvault backs up (``[databases.NAME]`` in the config file)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    url: str | None = Field(
        default=None,
        description="libpq URL or key=value string; a password in it is moved to PGPASSWORD.",
    )
    host: str | None = Field(default=None, description="Server host (if no url).")
    port: int | None = Field(default=None, description="Server port (if no url).")
    user: str | None = Field(default=None, description="Role to connect as (if no url).")
    dbname: str | None = Field(default=None, description="Database name; defaults to the key.")
    password_file: Path | None = Field(
        default=None, description="File holding the password (first line), read at connect time."
    )
    environment: str | None = Field(
        default=None, description="production, staging, ...: restores need a matching process."
    )
    storage: list[str] = Field(
        default_factory=list, description="Storage target names or URLs; the first gets backups."
    )
    name_template: str | None = Field(default=None, description="Storage key template.")
    timezone: str | None = Field(default=None, description="Time zone for names (IANA name).")
    format: DumpFormat | None = Field(
        default=None, description="pg_dump format; unset: the default stored form (README)."
    )
    compression: CompressionMethod | None = Field(
        default=None, description="Compression method; unset: the default stored form."
    )
    level: int | None = Field(default=None, description="Compression level (method default).")
    post_restore_sql: Path | None = Field(
        default=None, description="SQL file run in the restored database before the swap."
    )
    labels: dict[str, str] = Field(default_factory=dict, description="Labels on every backup.")
    encrypt_to: list[str] = Field(
        default_factory=list, description="age recipients (age1...) this database's backups use."
    )
    schedules: dict[str, ScheduleSettings] = Field(
        default_factory=dict, description="Scheduled backups by name ([...schedules.NAME])."
    )
    retention: RetentionSettings | None = Field(
        default=None, description="Retention policy of this database's backups (none: keep all)."
    )
    verify: VerifyScheduleSettings | None = Field(
        default=None, description="Scheduled restore drill of the newest completed backup."
    )
    freshness: FreshnessSettings = Field(
        default_factory=FreshnessSettings, description="Freshness and size alert rules."
    )
    notifications: DatabaseNotifySettings = Field(
        default_factory=DatabaseNotifySettings, description="Extra notification URLs/events."
    )
    restore_passkey_hash: str | None = Field(
        default=None,
        description="argon2 hash of a restore passkey ('pgvault passkey-hash'); when set, "
        "every restore into this database must give the passkey.",
    )
    pitr: bool = Field(
        default=False,
        description="Stream this server's WAL (pgvault wal stream) and allow physical backups.",
    )
    wal_storage: list[str] = Field(
        default_factory=list,
        description="Storage target (name or URL; the first is used) of the WAL archive and "
        "base backups; default: the database's storage.",
    )
    replication_slot: str | None = Field(
        default=None, description="Physical replication slot of the stream; default pgvault_<name>."
    )
    slot_warning_mib: int = Field(
        default=1024,
        ge=1,
        description="Health warning when the replication slot retains more WAL than this (MiB).",
    )
    require_recent_backup_minutes: int | None = Field(
        default=None,
        ge=1,
        description="Restores are refused unless a completed backup of this database, "
        "from this environment, is newer than this many minutes (the automatic pre-restore "
        "backup counts).",
    )
    files: list[str] = Field(
        default_factory=list,
        description="File sets ([files.NAME]) snapshotted after each backup, linked to it.",
    )


class ApiSettings(BaseModel):
    """The HTTP service (``[api]`` in the config file, ``PGVAULT_API__*``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    access_token_minutes: int = Field(
        default=15, ge=1, description="Lifetime of a JWT access token, in minutes."
    )
    refresh_token_days: int = Field(
        default=14, ge=1, description="Lifetime of a refresh token, in days."
    )
    download_link_seconds: int = Field(
        default=300, ge=10, description="Lifetime of a signed download link, in seconds."
    )
    max_upload_bytes: int = Field(
        default=10 * 1024**3, ge=1, description="Largest dump accepted by restore-upload (bytes)."
    )
    login_max_failures: int = Field(
        default=5, ge=1, description="Failed logins (per user or address) before a lockout."
    )
    login_lockout_seconds: int = Field(
        default=300, ge=1, description="How long logins are refused after too many failures."
    )
    login_delay_seconds: float = Field(
        default=0.25,
        ge=0,
        description="Delay added per recent failure before answering a failed login (s, max 2).",
    )
    max_json_bytes: int = Field(
        default=1024 * 1024, ge=1024, description="Largest JSON request body accepted (bytes)."
    )
    idempotency_hours: int = Field(
        default=24, ge=1, description="How long an Idempotency-Key maps to its job (hours)."
    )


class Settings(BaseSettings):
    """Everything pgvault reads from its environment and config file."""

    model_config = SettingsConfigDict(
        env_prefix="PGVAULT_",
        env_nested_delimiter="__",
        frozen=True,
        extra="forbid",
    )

    home: Path = Field(
        default=Path("pgvault-data"),
        description="Data directory: the default catalog and local backups live under it.",
    )
    environment: str | None = Field(
        default=None, description="The environment this process runs in (production, ...)."
    )
    catalog_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL of the catalog; default sqlite:///<home>/catalog.sqlite3.",
    )
    default_storage: str | None = Field(
        default=None,
        validation_alias=AliasChoices("default_storage", "PGVAULT_STORAGE"),
        description="Storage target name or URL used when none is given; default <home>/backups.",
    )
    bin_dir: Path | None = Field(
        default=None, description="Directory searched first for pg_dump, pg_restore, psql."
    )
    name_template: str = Field(
        default=DEFAULT_NAME_TEMPLATE, description="Default storage key template."
    )
    timezone: str = Field(default="UTC", description="Default time zone for names (IANA).")
    backup_timeout: float | None = Field(
        default=None, description="Seconds after which pg_dump is killed (default: none)."
    )
    compress_in: CompressIn = Field(
        default="auto",
        description="Who compresses archives: pg_dump (>= 16 for zstd), the stream, or auto.",
    )
    age_recipients: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="age recipients for every backup (PGVAULT_AGE_RECIPIENTS, comma-separated).",
    )
    age_identity_file: Path | None = Field(
        default=None,
        description="age identity file for restore/verify/download of encrypted backups.",
    )
    storage_targets: dict[str, StorageTargetSettings] = Field(
        default_factory=dict,
        description="Named storage targets ([storage_targets.NAME]); PGVAULT_STORAGE: default.",
    )
    databases: dict[str, DatabaseSettings] = Field(
        default_factory=dict, description="Named databases."
    )
    notifications: NotificationSettings = Field(
        default_factory=NotificationSettings, description="Notification URLs and events."
    )
    scheduler: SchedulerSettings = Field(
        default_factory=SchedulerSettings, description="The scheduler (misfires, shutdown)."
    )
    secret_key: SecretStr | None = Field(
        default=None,
        description="Signing secret of the service's tokens (PGVAULT_SECRET_KEY, >= 32 chars).",
    )
    secret_key_file: Path | None = Field(
        default=None, description="File holding the signing secret (first line)."
    )
    api: ApiSettings = Field(default_factory=ApiSettings, description="The HTTP service.")
    files: dict[str, FileSetSettings] = Field(
        default_factory=dict, description="File sets ([files.NAME]): uploaded files to snapshot."
    )
    server_os_user: str | None = Field(
        default=None,
        description="OS user that runs the PostgreSQL servers pgvault starts itself (recovery, "
        "the demo) when pgvault runs as root (PostgreSQL refuses root); default: a system user "
        "'pgvault', created when missing.",
    )

    @field_validator("age_recipients", mode="before")
    @classmethod
    def _split_recipients(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("files")
    @classmethod
    def _file_set_names(cls, value: dict[str, FileSetSettings]) -> dict[str, FileSetSettings]:
        for name in value:
            check_set_name(name)
        return value

    @model_validator(mode="after")
    def _linked_sets_exist(self) -> Settings:
        for name, db in self.databases.items():
            unknown = [f for f in db.files if f not in self.files]
            if unknown:
                raise ValueError(f"databases.{name}.files names unknown file set(s) {unknown}")
        return self

    @model_validator(mode="after")
    def _retention_targets_exist(self) -> Settings:
        """Each per-target retention table names a storage target of its database."""
        for name, db in self.databases.items():
            policies = [("retention", db.retention)] + [
                (f"schedules.{s}.retention", sched.retention) for s, sched in db.schedules.items()
            ]
            known = set(db.storage) | set(self.storage_targets)
            for where, policy in policies:
                for target in policy.targets if policy is not None else ():
                    if target not in known:
                        raise ValueError(
                            f"databases.{name}.{where}.{target} names no storage target of "
                            f"{name} (known: {', '.join(sorted(known)) or 'none'})"
                        )
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Order the sources: init > environment > TOML file."""
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if settings_cls.model_config.get("toml_file") is not None:
            sources.append(TomlConfigSettingsSource(settings_cls))
        return tuple(sources)

    @property
    def catalog_location(self) -> str:
        """The catalog's SQLAlchemy URL, with the SQLite default under ``home``."""
        if self.catalog_url:
            return self.catalog_url
        return f"sqlite:///{(self.home / 'catalog.sqlite3').absolute()}"

    @property
    def default_storage_location(self) -> str:
        """The storage target (name or URL) used when a command names none."""
        return self.default_storage or str((self.home / "backups").absolute())


def find_config_file(explicit: Path | None = None) -> Path | None:
    """Return the config file to read: ``explicit``, ``$PGVAULT_CONFIG``, or ``./pgvault.toml``.

    Raises:
        ConfigError: an explicitly named file does not exist.
    """
    from_env = os.environ.get("PGVAULT_CONFIG")
    named = explicit or (Path(from_env) if from_env else None)
    if named is not None:
        if not named.is_file():
            raise ConfigError(
                f"config file {named} not found: check PGVAULT_CONFIG", needs="config"
            )
        return named
    local = Path("pgvault.toml")
    return local if local.is_file() else None


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Read settings from ``overrides`` > ``PGVAULT_*`` environment > the config file.

    Raises:
        ConfigError: the file or a value is invalid (one line naming the field).
    """
    path = find_config_file(config_file)
    settings_cls: type[Settings] = Settings
    if path is not None:
        config = SettingsConfigDict(**{**Settings.model_config, "toml_file": path})
        settings_cls = type("FileSettings", (Settings,), {"model_config": config})
    try:
        return settings_cls(**overrides)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "settings"
        source = path or "the environment"
        message = str(first["msg"]).removeprefix("Value error, ")
        raise ConfigError(f"invalid setting {where}: {message} (in {source})") from exc
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}") from exc
