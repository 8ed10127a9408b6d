"""Root test configuration: only the network guard for unit tests lives here.

Heavy fixtures (PostgreSQL clusters) are in ``tests/integration/conftest.py``.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import NoReturn

import pytest

UNIT_DIR = Path(__file__).resolve().parent / "unit"


class NetworkInUnitTestError(RuntimeError):
    """A unit test tried to open a connection; such a test belongs in ``tests/integration``."""


@pytest.fixture(autouse=True)
def _no_network_in_unit_tests(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under ``tests/unit/`` make ``socket.socket.connect``/``connect_ex`` raise.

    Covers every Python-level client (http, boto3, asyncio, AF_UNIX too). libpq-based
    drivers (psycopg) connect in C and are not caught: unit tests must not build connections.
    This is the project's one allowed patch.
    """
    if not Path(request.node.path).resolve().is_relative_to(UNIT_DIR):
        return

    def refuse(self: socket.socket, address: object) -> NoReturn:
        self.close()  # callers that only clean up on OSError would leak it (ResourceWarning)
        raise NetworkInUnitTestError(f"unit tests must not connect anywhere (tried {address!r})")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
