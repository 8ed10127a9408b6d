"""Users, tokens and restore policies as pure logic over a SQLite catalog file (no network):
roles, argon2 hashes, the signing secret, JWT checks, refresh rotation and reuse detection,
API tokens, login throttling, the restore guards."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jwt
import pytest
from pydantic import SecretStr

from pgvault import passwords
from pgvault.catalog import Catalog
from pgvault.config.settings import Settings, load_settings
from pgvault.databases import DatabaseTarget
from pgvault.errors import AlreadyExists, AuthError, ConfigError, Refused, Throttled
from pgvault.postgres import conninfo
from pgvault.restores import policy
from pgvault.service import tokens, users
from pgvault.service.tokens import Tokens

SECRET = "s" * 40


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(
        home=tmp_path / "home",
        api={"login_max_failures": 2, "login_delay_seconds": 0, "login_lockout_seconds": 60},
    )


@pytest.fixture
def catalog(settings: Settings) -> Iterator[Catalog]:
    opened = Catalog.open(settings.catalog_location)
    yield opened
    opened.engine.dispose()


def test_roles_are_ordered() -> None:
    assert users.role_allows("owner", "viewer") and users.role_allows("admin", "operator")
    assert not users.role_allows("operator", "admin")
    with pytest.raises(ConfigError, match="unknown role"):
        users.check_role("root")


def test_passwords_are_argon2_and_checked() -> None:
    hashed = passwords.hash_secret("correct horse")
    assert hashed.startswith("$argon2id$") and "correct horse" not in hashed
    assert passwords.verify_secret("correct horse", hashed)
    assert not passwords.verify_secret("wrong horse", hashed)
    assert not passwords.verify_secret("anything", None)
    assert not passwords.verify_secret("anything", "not-a-hash")
    with pytest.raises(ConfigError, match="8 to 1024"):
        passwords.hash_secret("short")


def test_the_signing_secret_is_required_unless_dev(tmp_path: Path, settings: Settings) -> None:
    with pytest.raises(ConfigError, match="PGVAULT_SECRET_KEY"):
        tokens.load_secret(settings)
    assert len(tokens.load_secret(settings, dev=True)) >= 32
    with pytest.raises(ConfigError, match="too short"):
        tokens.load_secret(settings.model_copy(update={"secret_key": SecretStr("short")}))
    secret_file = tmp_path / "secret"
    secret_file.write_text(SECRET + "\n")
    from_file = settings.model_copy(update={"secret_key_file": secret_file})
    assert tokens.load_secret(from_file) == SECRET


def test_setup_only_while_no_user_exists(catalog: Catalog) -> None:
    assert users.setup(catalog, "root", "root password").role == "owner"
    with pytest.raises(AlreadyExists, match="setup is done"):
        users.setup(catalog, "eve", "eve password")
    with pytest.raises(AlreadyExists):
        users.create(catalog, "root", "other password", "viewer")
    with pytest.raises(Refused, match="last owner"):
        users.update(catalog, "root", role="admin")


def test_access_tokens_check_expiry_signature_and_version(
    settings: Settings, catalog: Catalog
) -> None:
    issuer = Tokens(settings, catalog, SECRET)
    user = users.create(catalog, "ann", "ann password", "operator")
    pair = issuer.issue(user)
    assert issuer.principal(pair.access_token).role == "operator"
    claims = jwt.decode(pair.access_token, SECRET, algorithms=["HS256"])
    expired = jwt.encode(
        {**claims, "exp": datetime.now(UTC) - timedelta(seconds=1)}, SECRET, algorithm="HS256"
    )
    with pytest.raises(AuthError, match="expired"):
        issuer.principal(expired)
    with pytest.raises(AuthError, match="not valid"):
        issuer.principal(jwt.encode(claims, "x" * 40, algorithm="HS256"))
    users.update(catalog, "ann", role="viewer")
    assert issuer.principal(pair.access_token).role == "viewer"  # role read per request
    users.update(catalog, "ann", password="new ann password")
    with pytest.raises(AuthError, match="session was ended"):
        issuer.principal(pair.access_token)


def test_refresh_rotation_and_reuse_detection(settings: Settings, catalog: Catalog) -> None:
    issuer = Tokens(settings, catalog, SECRET)
    user = users.create(catalog, "bob", "bob password", "viewer")
    first = issuer.issue(user)
    second = issuer.refresh(first.refresh_token)
    third = issuer.refresh(second.refresh_token)
    with pytest.raises(AuthError, match="already used"):
        issuer.refresh(first.refresh_token)
    with pytest.raises(AuthError):
        issuer.refresh(third.refresh_token)  # the family was revoked by the replay
    other = issuer.issue(user)
    issuer.logout(user.id, other.refresh_token)
    with pytest.raises(AuthError):
        issuer.refresh(other.refresh_token)


def test_api_tokens_are_stored_hashed(settings: Settings, catalog: Catalog) -> None:
    issuer = Tokens(settings, catalog, SECRET)
    plain, record = tokens.create_api_token(catalog, "ci", "operator", created_by="t")
    assert plain.startswith("pgv_") and record.token_hash == tokens.digest(plain)
    assert issuer.principal(plain).actor == "token:ci"
    tokens.revoke_api_token(catalog, record.id)
    with pytest.raises(AuthError, match="revoked"):
        issuer.principal(plain)
    expiring, _ = tokens.create_api_token(catalog, "old", "viewer", created_by="t", expires_days=1)
    assert issuer.principal(expiring).role == "viewer"


def test_login_failures_are_throttled_per_user_and_client(
    settings: Settings, catalog: Catalog
) -> None:
    users.create(catalog, "cat", "cat password", "viewer")
    for _ in range(2):
        with pytest.raises(AuthError, match="wrong user name or password"):
            users.authenticate(settings, catalog, "cat", "nope nope", "10.0.0.1")
    with pytest.raises(Throttled) as locked:  # that client, even with the right password
        users.authenticate(settings, catalog, "cat", "cat password", "10.0.0.1")
    assert 0 < locked.value.retry_after <= 16  # the first lockout is short; they grow
    # the owner of the account, from their own client, is never locked out by someone else
    assert (
        users.authenticate(settings, catalog, "cat", "cat password", "10.0.0.2").username == "cat"
    )
    with pytest.raises(Throttled):
        users.authenticate(settings, catalog, "cat", "cat password", "10.0.0.1")
    users.create(catalog, "dog", "dog password", "viewer")
    assert (
        users.authenticate(settings, catalog, "dog", "dog password", "10.0.0.1").username == "dog"
    )


def test_restore_guards(settings: Settings, catalog: Catalog) -> None:
    configured = load_settings(
        home=settings.home,
        environment="staging",
        databases={
            "app": {
                "url": "postgresql://u@localhost/appdb",
                "environment": "staging",
                "restore_passkey_hash": passwords.hash_secret("passkey 123"),
            }
        },
    )
    app = configured.databases["app"]
    target = DatabaseTarget("app", conninfo.parse("postgresql://u@localhost/appdb"), app)

    def check(confirm: str = "appdb", passkey: str | None = "passkey 123") -> None:
        policy.check(
            configured, catalog, target, confirm=confirm, passkey=passkey, safety_backup=True
        )

    check()
    check(confirm="app")
    with pytest.raises(Refused, match="confirmation"):
        check(confirm="other")
    with pytest.raises(Refused, match="Invalid restore passkey"):
        check(passkey="wrong")
    elsewhere = configured.model_copy(update={"environment": "production"})
    with pytest.raises(Refused, match="belongs to environment 'staging'"):
        policy.check(
            elsewhere, catalog, target, confirm="app", passkey="passkey 123", safety_backup=True
        )


def test_lockouts_of_a_pair_grow_with_each_failure(settings: Settings, catalog: Catalog) -> None:
    from pgvault import throttle
    from pgvault.catalog import accounts

    key = throttle.pair_key("login", "eve", "10.9.9.9")
    lengths = []
    for _ in range(5):
        throttle.failed(settings, catalog, key, "logins of eve")
        [state] = accounts.get_login_failures(catalog, [key])
        if state.locked_until is not None:
            lengths.append(round((state.locked_until - state.last_failure_at).total_seconds()))
    assert lengths == [15, 30, 60, 60]  # doubled each time, capped at login_lockout_seconds
