"""Credentials of the service: JWT access tokens, rotating refresh tokens, API tokens and
signed download links.

* Access token: a JWT (HS256, PyJWT) with ``sub`` (user id), ``ver`` (the user's
  ``token_version``), ``typ=access`` and a short ``exp`` (``api.access_token_minutes``).
  Each request re-reads the user, so disabling a user, changing a role or a password takes
  effect at once.
* Refresh token: ``pgvr_<random>``; only its sha256 is stored. Each use revokes it and
  issues the next one of the same family; presenting a revoked one (a stolen copy replayed)
  revokes the whole family (OAuth 2.0 Security BCP, "refresh token rotation").
* API token: ``pgv_<random>`` (256 bits) for scripts and CI, shown once, sha256 stored.
* Download link: a JWT with ``typ=download``, the backup id and who made it (``by``: a
  user with their ``token_version``, or an API token), valid a few minutes, so a browser can
  fetch a backup without a bearer token in its URL. It dies with its creator: a deleted or
  disabled user (or one whose sessions were ended), a revoked or expired API token.
* Browser session: a JWT with ``typ=session`` in the dashboard's cookie; its forms carry an
  HMAC of the session (:meth:`Tokens.sign`) against cross-site requests.

The signing secret comes from ``PGVAULT_SECRET_KEY`` or ``secret_key_file``; without one
the service refuses to start, unless ``--dev`` asks for a throwaway secret.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

import jwt

from pgvault import runtime
from pgvault.catalog import Catalog
from pgvault.catalog import accounts as rows
from pgvault.catalog.accounts import ApiTokenRecord, RefreshTokenRecord, Role, UserRecord
from pgvault.config.settings import Settings
from pgvault.errors import AuthError, ConfigError, NotFound
from pgvault.service.users import check_role

log = logging.getLogger(__name__)

ALGORITHM = "HS256"
MIN_SECRET = 32
API_PREFIX = "pgv_"
REFRESH_PREFIX = "pgvr_"
LAST_USED_EVERY = timedelta(minutes=1)


def digest(token: str) -> str:
    """sha256 hex of a high-entropy token (what the catalog stores)."""
    return hashlib.sha256(token.encode()).hexdigest()


def load_secret(settings: Settings, *, dev: bool = False) -> str:
    """The JWT signing secret: ``secret_key``, else the first line of ``secret_key_file``.

    Args:
        dev: when none is configured, generate a throwaway one (tokens die with the process).

    Raises:
        ConfigError: none configured (and not ``dev``), unreadable file, or shorter than 32
            characters.
    """
    secret = settings.secret_key.get_secret_value() if settings.secret_key else None
    if secret is None and settings.secret_key_file is not None:
        try:
            secret = settings.secret_key_file.read_text().splitlines()[0].strip()
        except (OSError, IndexError) as exc:
            raise ConfigError(f"cannot read secret_key_file {settings.secret_key_file}") from exc
    if secret is None:
        if not dev:
            raise ConfigError(
                "no signing secret: set PGVAULT_SECRET_KEY (e.g. from "
                "'python -c \"import secrets; print(secrets.token_urlsafe(48))\"') or "
                "secret_key_file, or run with --dev for a throwaway one"
            )
        log.warning("DEVELOPMENT MODE: using a generated throwaway signing secret")
        return secrets.token_urlsafe(48)
    if len(secret) < MIN_SECRET:
        raise ConfigError(f"the signing secret is too short: use at least {MIN_SECRET} characters")
    return secret


@dataclass(frozen=True)
class Principal:
    """Who is calling: a user (by a JWT) or an API token; ``role`` is current."""

    kind: Literal["user", "token"]
    id: str
    name: str
    role: Role

    @property
    def actor(self) -> str:
        """How the audit log names the caller: ``alice`` or ``token:ci``."""
        return self.name if self.kind == "user" else f"token:{self.name}"


@dataclass(frozen=True)
class TokenPair:
    """What a login or a refresh answers; ``expires_in`` is the access token's seconds."""

    access_token: str
    refresh_token: str
    expires_in: int
    token_type: str = "bearer"  # noqa: S105 - the OAuth 2 token type, not a secret


class Tokens:
    """Issues and checks every credential of the service, with one secret and catalog."""

    def __init__(self, settings: Settings, catalog: Catalog, secret: str) -> None:
        self._api = settings.api
        self._catalog = catalog
        self._secret = secret

    # --- JWTs -------------------------------------------------------------------------

    def _encode(self, claims: dict[str, Any], lifetime: timedelta) -> str:
        now = runtime.now()
        body = {**claims, "iat": now, "exp": now + lifetime, "jti": secrets.token_hex(8)}
        return jwt.encode(body, self._secret, algorithm=ALGORITHM)

    def _decode(self, token: str, typ: str) -> dict[str, Any]:
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                self._secret,
                algorithms=[ALGORITHM],
                options={"require": ["exp", "iat", "sub", "typ"]},
            )
        except jwt.ExpiredSignatureError as exc:
            raise AuthError("the token has expired: log in again or refresh it") from exc
        except jwt.PyJWTError as exc:
            raise AuthError("the token is not valid: log in again") from exc
        if claims.get("typ") != typ:
            raise AuthError("the token is not valid here: use an access token")
        return claims

    def issue(self, user: UserRecord) -> TokenPair:
        """A new access token and a new refresh-token family for ``user`` (a login)."""
        return self._pair(user, family_id=secrets.token_hex(8), previous=None)

    def _pair(self, user: UserRecord, family_id: str, previous: str | None) -> TokenPair:
        lifetime = timedelta(minutes=self._api.access_token_minutes)
        access = self._encode(
            {"sub": user.id, "ver": user.token_version, "typ": "access"}, lifetime
        )
        plain = REFRESH_PREFIX + secrets.token_urlsafe(32)
        now = runtime.now()
        record = RefreshTokenRecord(
            id=secrets.token_hex(8),
            user_id=user.id,
            family_id=family_id,
            token_hash=digest(plain),
            created_at=now,
            expires_at=now + timedelta(days=self._api.refresh_token_days),
        )
        if previous is None:
            rows.add_refresh_token(self._catalog, record)
        elif not rows.rotate_refresh_token(self._catalog, previous, record, now):
            rows.revoke_refresh_tokens(self._catalog, now, family_id=family_id)
            raise AuthError("the refresh token was already used: log in again")
        return TokenPair(access, plain, int(lifetime.total_seconds()))

    def refresh(self, refresh_token: str) -> TokenPair:
        """Rotate: revoke ``refresh_token`` and answer a new pair of the same family.

        Raises:
            AuthError: unknown, expired or revoked token (a revoked one revokes its whole
                family: someone replayed it), or the user is gone or disabled.
        """
        found = rows.find_refresh_token(self._catalog, digest(refresh_token))
        now = runtime.now()
        if found is None or not hmac.compare_digest(found.token_hash, digest(refresh_token)):
            raise AuthError("unknown refresh token: log in again")
        if found.revoked_at is not None:
            rows.revoke_refresh_tokens(self._catalog, now, family_id=found.family_id)
            log.warning("refresh token reuse for user %s: its sessions revoked", found.user_id)
            raise AuthError("the refresh token was already used or revoked: log in again")
        if found.expires_at <= now:
            raise AuthError("the refresh token has expired: log in again")
        user = rows.find_user(self._catalog, user_id=found.user_id)
        if user is None or user.disabled:
            raise AuthError("the user is gone or disabled")
        return self._pair(user, found.family_id, previous=found.id)

    def logout(self, user_id: str, refresh_token: str | None) -> None:
        """Revoke ``refresh_token``'s family (or, without one, every session of the user)
        and bump the user's ``token_version`` so their access tokens stop working."""
        now = runtime.now()
        found = rows.find_refresh_token(self._catalog, digest(refresh_token or ""))
        if found is not None and found.user_id == user_id:
            rows.revoke_refresh_tokens(self._catalog, now, family_id=found.family_id)
        else:
            rows.revoke_refresh_tokens(self._catalog, now, user_id=user_id)
        user = rows.find_user(self._catalog, user_id=user_id)
        if user is not None:
            rows.update_user(
                self._catalog, user.id, token_version=user.token_version + 1, updated_at=now
            )

    # --- who is calling -------------------------------------------------------------------

    def principal(self, bearer: str) -> Principal:
        """The caller of an ``Authorization: Bearer`` credential (API token or JWT).

        Raises:
            AuthError: unknown, expired, revoked, tampered, or the user is disabled.
        """
        if bearer.startswith(API_PREFIX):
            return self._api_principal(bearer)
        return self._user_principal(self._decode(bearer, "access"))

    def _user_principal(self, claims: dict[str, Any]) -> Principal:
        user = rows.find_user(self._catalog, user_id=str(claims["sub"]))
        if user is None or user.disabled:
            raise AuthError("the user of this token is gone or disabled")
        if claims.get("ver") != user.token_version:
            raise AuthError("this session was ended (logout or new password): log in again")
        return Principal("user", user.id, user.username, user.role)

    def _api_principal(self, plain: str) -> Principal:
        found = rows.find_api_token(self._catalog, digest(plain))
        now = runtime.now()
        if found is None or not hmac.compare_digest(found.token_hash, digest(plain)):
            raise AuthError("unknown API token")
        if found.revoked_at is not None:
            raise AuthError(f"API token {found.name!r} was revoked")
        if found.expires_at is not None and found.expires_at <= now:
            raise AuthError(f"API token {found.name!r} has expired: create a new one")
        if found.last_used_at is None or now - found.last_used_at > LAST_USED_EVERY:
            rows.update_api_token(self._catalog, found.id, last_used_at=now)
        return Principal("token", found.id, found.name, found.role)

    # --- browser sessions (the web dashboard) -----------------------------------------------

    def sign_session(self, user: UserRecord, lifetime: timedelta) -> str:
        """A session token for a browser's cookie: a JWT with ``typ=session``, the user's
        id and ``token_version``, valid ``lifetime``. It is no bearer credential for the API
        (which takes ``typ=access`` only); it ends with the user's other sessions
        (:meth:`logout`, a new password, disabling)."""
        claims = {"sub": user.id, "ver": user.token_version, "typ": "session"}
        return self._encode(claims, lifetime)

    def session_principal(self, token: str) -> Principal:
        """The user of a session token (:meth:`sign_session`).

        Raises:
            AuthError: expired, tampered, ended, or the user is gone or disabled.
        """
        return self._user_principal(self._decode(token, "session"))

    def sign(self, purpose: str, value: str) -> str:
        """HMAC-SHA256 (hex) of ``value`` for ``purpose`` with the signing secret, e.g. a
        form's CSRF token bound to its session (OWASP's "signed double-submit cookie")."""
        message = f"{purpose}\x00{value}".encode()
        return hmac.new(self._secret.encode(), message, hashlib.sha256).hexdigest()

    def signed(self, purpose: str, value: str, signature: str) -> bool:
        """Whether ``signature`` is :meth:`sign` of ``value`` for ``purpose`` (constant time)."""
        return hmac.compare_digest(self.sign(purpose, value), signature)

    # --- download links -----------------------------------------------------------------

    def sign_download(self, backup_id: str, creator: Principal) -> tuple[str, datetime]:
        """A download token for ``backup_id`` made by ``creator``, and when it expires (UTC)."""
        lifetime = timedelta(seconds=self._api.download_link_seconds)
        by: dict[str, Any] = {"kind": creator.kind, "id": creator.id}
        if creator.kind == "user":
            user = rows.find_user(self._catalog, user_id=creator.id)
            by["ver"] = user.token_version if user is not None else -1
        token = self._encode({"sub": backup_id, "typ": "download", "by": by}, lifetime)
        return token, runtime.now() + lifetime

    def check_download(self, token: str) -> tuple[str, Principal]:
        """The backup id a download token was signed for, and its creator (still valid).

        Raises:
            AuthError: expired, tampered, or its creator is gone, disabled or revoked (ask
                for a new link).
        """
        claims = self._decode(token, "download")
        by = claims.get("by")
        if not isinstance(by, dict):
            raise AuthError("the download link is not valid: ask for a new one")
        return str(claims["sub"]), self._creator(by)

    def _creator(self, by: dict[str, Any]) -> Principal:
        gone = AuthError("the download link's creator is gone or disabled: ask for a new one")
        if by.get("kind") == "user":
            user = rows.find_user(self._catalog, user_id=str(by.get("id")))
            if user is None or user.disabled or user.token_version != by.get("ver"):
                raise gone
            return Principal("user", user.id, user.username, user.role)
        found = [t for t in rows.list_api_tokens(self._catalog) if t.id == by.get("id")]
        now = runtime.now()
        if not found or found[0].revoked_at is not None:
            raise gone
        if found[0].expires_at is not None and found[0].expires_at <= now:
            raise gone
        return Principal("token", found[0].id, found[0].name, found[0].role)


# --- API tokens (no signing secret needed) -------------------------------------------------


def create_api_token(
    catalog: Catalog,
    name: str,
    role: str,
    *,
    created_by: str | None,
    expires_days: int | None = None,
) -> tuple[str, ApiTokenRecord]:
    """A new API token: ``(plain token, shown once; its record)``.

    Raises:
        ConfigError: unknown role or empty name.
    """
    if not name.strip() or len(name) > 255:
        raise ConfigError("an API token needs a name of 1-255 characters")
    plain = API_PREFIX + secrets.token_urlsafe(32)
    now = runtime.now()
    record = ApiTokenRecord(
        id=secrets.token_hex(8),
        name=name,
        token_hash=digest(plain),
        role=check_role(role),
        created_by=created_by,
        created_at=now,
        expires_at=now + timedelta(days=expires_days) if expires_days else None,
    )
    rows.add_api_token(catalog, record)
    return plain, record


def revoke_api_token(catalog: Catalog, token_id: str) -> None:
    """Revoke an API token.

    Raises:
        NotFound: unknown id.
    """
    if rows.update_api_token(catalog, token_id, revoked_at=runtime.now()) == 0:
        raise NotFound(f"no API token with id {token_id!r}: GET /api/v1/tokens lists them")
