"""The pgvault service for one test: the real app on a real uvicorn server (a thread of the
test process, a free port on 127.0.0.1), its catalog, and clients with credentials.

Credentials are made the fast way where the test is not about them: API tokens per role
(sha256, no argon2), so a role matrix costs milliseconds.
"""

from __future__ import annotations

import secrets
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
import uvicorn

from pgvault.api import create_app
from pgvault.catalog import Catalog
from pgvault.config.settings import Settings, load_settings
from pgvault.service import tokens, users
from support.pgcluster import PgCluster

SECRET = "test-secret-" + "x" * 40
ROLES = ("viewer", "operator", "admin", "owner")
PASSWORD = "correct horse battery"  # noqa: S105 - test users' password


def database_entry(cluster: PgCluster, dbname: str, **extra: Any) -> dict[str, Any]:
    """A ``[databases.NAME]`` entry for ``dbname`` on ``cluster`` (password in the URL,
    which pgvault moves out of the parameters)."""
    return {"url": cluster.url(dbname, with_password=True), **extra}


@dataclass
class ApiServer:
    """A running service: ``url``, ``settings``, ``catalog`` and credential helpers."""

    url: str
    settings: Settings
    catalog: Catalog
    server: uvicorn.Server
    thread: threading.Thread
    sock: socket.socket
    _tokens: dict[str, str] = field(default_factory=dict)

    @classmethod
    def start(cls, home: Path, *, access_log: bool = False, **overrides: Any) -> ApiServer:
        """Settings with ``home`` and ``overrides``; the app on a free port; waits until
        it answers. ``access_log``: uvicorn logs each request (logger ``uvicorn.access``)."""
        settings = load_settings(home=home, **overrides)
        catalog = Catalog.open(settings.catalog_location)
        app = create_app(settings, catalog=catalog, secret=SECRET)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        config = uvicorn.Config(
            app,
            log_level="info" if access_log else "warning",
            lifespan="on",
            ws="none",
            http="h11",
            access_log=access_log,
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name="uvicorn", daemon=True
        )
        thread.start()
        deadline = time.monotonic() + 10
        while not server.started:
            if time.monotonic() > deadline or not thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return cls(f"http://127.0.0.1:{port}", settings, catalog, server, thread, sock)

    def stop(self) -> None:
        """Stop uvicorn (the app's lifespan cancels running jobs) and close the catalog."""
        self.server.should_exit = True
        self.thread.join(30)
        self.sock.close()
        self.catalog.engine.dispose()

    def client(self, token: str | None = None, **kwargs: Any) -> httpx.Client:
        """An HTTP client on ``/api/v1`` with ``Authorization: Bearer token`` if given."""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url + "/api/v1", headers=headers, timeout=120.0, **kwargs)

    def token(self, role: str) -> str:
        """An API token of ``role`` (one per role, made once)."""
        if role not in self._tokens:
            plain, _ = tokens.create_api_token(self.catalog, f"test-{role}", role, created_by="t")
            self._tokens[role] = plain
        return self._tokens[role]

    def user(self, role: str, password: str = PASSWORD) -> str:
        """A new user of ``role``; returns its name."""
        name = f"{role}_{secrets.token_hex(3)}"
        users.create(self.catalog, name, password, role)
        return name

    def login(self, username: str, password: str = PASSWORD) -> dict[str, Any]:
        """``POST /auth/login``; the answer's JSON (asserts 200)."""
        with self.client() as client:
            answer = client.post("/auth/login", json={"username": username, "password": password})
        assert answer.status_code == 200, answer.text
        body: dict[str, Any] = answer.json()
        return body

    def wait_job(self, job_id: str, token: str, timeout: float = 120.0) -> dict[str, Any]:
        """Poll ``GET /jobs/{id}`` until the job ends; its last JSON."""
        deadline = time.monotonic() + timeout
        with self.client(token) as client:
            while True:
                job: dict[str, Any] = client.get(f"/jobs/{job_id}").json()
                if job["status"] in ("completed", "failed", "cancelled", "interrupted"):
                    return job
                assert time.monotonic() < deadline, f"job {job_id} still {job['status']}"
                time.sleep(0.1)


@contextmanager
def peak_memory() -> Iterator[dict[str, int]]:
    """Samples this process's RSS every 20 ms; yields ``{"base", "peak"}`` in bytes (filled
    in when the block ends)."""
    proc = psutil.Process()
    found = {"base": proc.memory_info().rss, "peak": 0}
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            found["peak"] = max(found["peak"], proc.memory_info().rss)
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        yield found
    finally:
        stop.set()
        sampler.join()


def assert_error(answer: httpx.Response, status: int, contains: str = "") -> dict[str, str]:
    """The answer is ``status`` with the error body shape (and ``contains`` in its detail)."""
    assert answer.status_code == status, f"{answer.status_code}: {answer.text}"
    body = answer.json()
    assert set(body) == {"error", "detail"}, body
    assert "Traceback" not in body["detail"] and SECRET not in answer.text
    assert contains.lower() in body["detail"].lower(), body
    return dict(body)
