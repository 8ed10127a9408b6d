"""Settings: init > PGVAULT_* environment > pgvault.toml, one-line errors naming the field."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pgvault import databases
from pgvault.config.settings import load_settings
from pgvault.errors import ConfigError, Refused
from pgvault.restores import policy

TOML = """\
home = "{home}"
timezone = "Asia/Kolkata"
name_template = "{{app}}-{{environment}}-on-{{started:%Y-%m-%d-at-%I-%M-%S-%p}}-{{tz}}.dump"
backup_timeout = 3600

[storage_targets.offsite]
url = "s3://bucket/prefix"
region = "ap-south-1"

[databases.app]
url = "postgresql://app@db.example:5432/shop"
environment = "production"
storage = ["offsite"]
labels = {{ team = "payments" }}
"""


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No inherited PGVAULT_* variables, no ./pgvault.toml of the caller."""
    for name in list(os.environ):
        if name.startswith("PGVAULT_") or name == "PGPASSWORD":
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def _config(tmp_path: Path) -> Path:
    path = tmp_path / "conf" / "pgvault.toml"
    path.parent.mkdir()
    path.write_text(TOML.format(home=tmp_path / "data"), "utf-8")
    return path


def test_file_values(tmp_path: Path) -> None:
    settings = load_settings(config_file=_config(tmp_path))

    assert settings.home == tmp_path / "data"
    assert settings.timezone == "Asia/Kolkata"
    assert settings.backup_timeout == 3600
    assert settings.storage_targets["offsite"].region == "ap-south-1"
    app = settings.databases["app"]
    assert (app.environment, app.storage, app.labels) == (
        "production",
        ["offsite"],
        {"team": "payments"},
    )
    assert settings.catalog_location == f"sqlite:///{tmp_path / 'data' / 'catalog.sqlite3'}"
    assert settings.default_storage_location == str(tmp_path / "data" / "backups")


def test_environment_overrides_the_file_and_init_overrides_both(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = _config(tmp_path)
    monkeypatch.setenv("PGVAULT_DATABASES__APP__ENVIRONMENT", "staging")
    monkeypatch.setenv("PGVAULT_TIMEZONE", "UTC")
    monkeypatch.setenv("PGVAULT_ENVIRONMENT", "staging")

    settings = load_settings(config_file=config)
    overridden = load_settings(config_file=config, timezone="Europe/Paris")

    app = settings.databases["app"]
    assert app.environment == "staging"
    assert app.url == "postgresql://app@db.example:5432/shop"  # the rest of the file stays
    assert settings.timezone == "UTC"
    assert overridden.timezone == "Europe/Paris"
    target = databases.from_config(settings, "app")
    policy.check_environment(settings, target)  # staging process, staging database


def test_config_found_through_pgvault_config_and_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = _config(tmp_path)
    monkeypatch.setenv("PGVAULT_CONFIG", str(config))
    assert load_settings().timezone == "Asia/Kolkata"

    monkeypatch.delenv("PGVAULT_CONFIG")
    assert load_settings().timezone == "UTC"  # nothing in the working directory
    (tmp_path / "pgvault.toml").write_text('timezone = "Asia/Tokyo"\n')
    assert load_settings().timezone == "Asia/Tokyo"


def test_errors_name_the_field_and_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[databases.app]\nurl = "postgresql://x/y"\nformat = "zip"\n')

    with pytest.raises(ConfigError, match=r"invalid setting databases\.app\.format.*bad\.toml"):
        load_settings(config_file=bad)
    with pytest.raises(ConfigError, match="config file .*missing.toml not found"):
        load_settings(config_file=tmp_path / "missing.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("home = [unclosed\n")
    with pytest.raises(ConfigError, match="broken.toml"):
        load_settings(config_file=broken)
    monkeypatch.setenv("PGVAULT_BACKUP_TIMEOUT", "soon")
    with pytest.raises(ConfigError, match="backup_timeout.*the environment"):
        load_settings()


def test_environment_guard(tmp_path: Path) -> None:
    config = _config(tmp_path)
    staging = load_settings(config_file=config, environment="staging")
    production = load_settings(config_file=config, environment="production")

    with pytest.raises(Refused, match="belongs to environment 'production'.*'staging'"):
        policy.check_environment(staging, databases.from_config(staging, "app"))
    policy.check_environment(production, databases.from_config(production, "app"))
    # a bare URL naming the configured database is still that database
    by_url = databases.from_url(staging, "postgresql://app@db.example:5432/shop")
    assert by_url.name == "app" and by_url.environment == "production"
    other = databases.from_url(staging, "postgresql://app@db.example:5432/other")
    policy.check_environment(staging, other)  # not configured: no guard
