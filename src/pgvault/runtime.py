"""Facts of the running process that several packages record: the clock, ids, who runs.

One definition each, so every catalog row says the same thing the same way: :func:`now`
(aware UTC), :func:`runner_id` (``host:pid``, recorded on running backups, restores and
jobs), :func:`runner_is_dead` (a row's process died on this host: the next start repairs
what it left), :func:`new_id` (sortable ids).
"""

from __future__ import annotations

import os
import secrets
import socket
from datetime import UTC, datetime


def now() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


def new_id(at: datetime | None = None) -> str:
    """A sortable, unique-enough id: ``20261121-053012-7f3a`` (UTC time + 16 random bits)."""
    moment = (at or now()).astimezone(UTC)
    return f"{moment:%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"


def runner_id() -> str:
    """``host:pid`` of this process."""
    return f"{socket.gethostname()}:{os.getpid()}"


def runner_is_dead(runner: str | None, started: datetime) -> bool:
    """Whether ``runner`` (a :func:`runner_id`) names a process of *this* host that is gone.

    A pid reused by a later process (one created after ``started``, an aware datetime) counts
    as gone. Rows of other hosts, or without a runner, are never called dead: only their own
    host can tell.
    """
    host, _, pid_text = (runner or "").rpartition(":")
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    try:
        import psutil  # only for this check (keeps start-up light)

        proc = psutil.Process(int(pid_text))
        alive = proc.is_running() and proc.create_time() <= started.timestamp() + 1
    except psutil.Error:
        alive = False
    return not alive
