"""Throttling guesses of a secret (a login's password, a database's restore passkey) per
(account, client) pair, with growing delays, so that nobody can lock the owner out.

Each failure of a pair within ``api.login_lockout_seconds`` of its previous one counts; the
answer to a failure is delayed ``api.login_delay_seconds`` x failures (at most 2 s); from
``api.login_max_failures`` failures on, the pair is refused (:class:`Throttled`, HTTP 429
with ``Retry-After``) for a time that doubles with each further failure, from 15 s up to
``api.login_lockout_seconds``. A success clears the pair. Another client (the owner at
their own address, every user behind the same reverse proxy) is not affected by a pair's
failures. Lockouts are logged (the account, never the secret; an unknown account name is
logged as ``unknown``, since a password may have been typed into it).
"""

from __future__ import annotations

import logging
import time
from datetime import timedelta

from pgvault import runtime
from pgvault.catalog import Catalog
from pgvault.catalog import accounts as rows
from pgvault.catalog.accounts import LoginFailures
from pgvault.config.settings import Settings
from pgvault.errors import Throttled

log = logging.getLogger(__name__)

FIRST_LOCKOUT_SECONDS = 15
MAX_DELAY_SECONDS = 2.0


def pair_key(kind: str, account: str, client: str | None) -> str:
    """The counter key of one (account, client) pair, e.g. ``login:alice|10.0.0.7``."""
    return f"{kind}:{account[:200]}|{(client or '-')[:100]}"


def check(catalog: Catalog, key: str, what: str) -> None:
    """Refuse while the pair ``key`` is locked.

    Raises:
        Throttled: locked; ``retry_after`` in seconds.
    """
    now = runtime.now()
    for state in rows.get_login_failures(catalog, [key]):
        if state.locked_until is not None and state.locked_until > now:
            wait = int((state.locked_until - now).total_seconds()) + 1
            raise Throttled(f"too many {what}: try again in {wait} s", retry_after=wait)


def failed(settings: Settings, catalog: Catalog, key: str, shown: str) -> int:
    """Count a failure of the pair ``key``, lock it when due, wait the growing delay; returns
    the pair's recent failures. ``shown`` names the account in the log (never a secret)."""
    api = settings.api
    now = runtime.now()
    window = timedelta(seconds=api.login_lockout_seconds)
    states = rows.get_login_failures(catalog, [key])
    recent = [s for s in states if now - s.last_failure_at < window]
    failures = (recent[0].failures if recent else 0) + 1
    locked = None
    if failures >= api.login_max_failures:
        seconds = min(
            api.login_lockout_seconds,
            FIRST_LOCKOUT_SECONDS * 2 ** (failures - api.login_max_failures),
        )
        locked = now + timedelta(seconds=seconds)
        log.warning(
            "%s locked for %d s after %d failures from client %s",
            shown,
            seconds,
            failures,
            key.rsplit("|", 1)[-1],
        )
    rows.save_login_failures(
        catalog, LoginFailures(key=key, failures=failures, last_failure_at=now, locked_until=locked)
    )
    time.sleep(min(MAX_DELAY_SECONDS, api.login_delay_seconds * failures))
    return failures


def succeeded(catalog: Catalog, key: str) -> None:
    """Forget the failures of the pair ``key``."""
    rows.clear_login_failures(catalog, [key])
