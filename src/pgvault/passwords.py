"""argon2id hashes of secrets people type: service passwords and restore passkeys.

pwdlib (with argon2-cffi) is imported on first use, so commands that never check a secret
do not pay for it. Verification is constant time in the secret, and a missing hash costs the
same as a wrong one (it is checked against a dummy hash).
"""

from __future__ import annotations

import functools
import logging
import secrets
from typing import Any

from pgvault.errors import ConfigError

log = logging.getLogger(__name__)

MIN_LENGTH = 8
MAX_LENGTH = 1024


@functools.cache
def _hasher() -> Any:
    try:
        from pwdlib import PasswordHash
        from pwdlib.hashers.argon2 import Argon2Hasher
    except ImportError as exc:  # the 'api' extra is missing
        raise ConfigError(
            "checking passwords needs pgvault's 'api' extra: pip install 'pgvault[api]'"
        ) from exc
    return PasswordHash((Argon2Hasher(),))


@functools.cache
def _dummy_hash() -> str:
    return str(_hasher().hash(secrets.token_urlsafe(16)))


def hash_secret(plain: str) -> str:
    """An argon2id hash (PHC string) of a password or restore passkey.

    Raises:
        ConfigError: shorter than 8 or longer than 1024 characters.
    """
    if not MIN_LENGTH <= len(plain) <= MAX_LENGTH:
        raise ConfigError(
            f"a password needs {MIN_LENGTH} to {MAX_LENGTH} characters: choose a longer one"
        )
    return str(_hasher().hash(plain))


def verify_secret(plain: str, hashed: str | None) -> bool:
    """Whether ``plain`` matches the argon2 hash ``hashed`` (constant time in the secret;
    a missing hash costs the same as a wrong one)."""
    try:
        ok = _hasher().verify(plain[:MAX_LENGTH], hashed or _dummy_hash())
    except ConfigError:
        raise
    except Exception:  # noqa: BLE001 - a malformed hash in the config is a mismatch
        log.warning("a stored password hash is malformed; treating it as a mismatch")
        return False
    return bool(ok) and hashed is not None
