"""A real ``pgvault serve`` for the browser tests: the console script as a child process
(API, dashboard and scheduler in one process) on a free port of 127.0.0.1, configured by a
``pgvault.toml`` the test writes, with its catalog and storage shared with the test process
(which seeds rows and makes users through the same domain functions).

Also the Chromium that Playwright drives: Debian's ``/usr/bin/chromium`` (``scripts/test.sh``
installs it), launched headless with a fresh profile (Playwright gives each launch its own
temporary user data dir) and no background traffic.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pgvault.catalog import Catalog
from pgvault.catalog.records import BackupRecord
from pgvault.config.settings import Settings, load_settings
from support.vault import PGVAULT, clean_env

CHROMIUM = Path(os.environ.get("PGVAULT_TEST_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SECRET = "web-test-secret-" + "y" * 40
PASSWORD = "correct horse battery"  # noqa: S105 - the test users' password
START_TIMEOUT = 60.0


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def toml_value(value: Any) -> str:
    """``value`` as TOML (strings, numbers, booleans, lists, inline tables)."""
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + " }"
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return json.dumps(str(value))


def write_config(path: Path, config: Mapping[str, Any]) -> None:
    """Write ``config`` as TOML: plain keys first, then a ``[section]`` per table of values
    and a ``[section.name]`` per entry of a table of tables (deeper tables inline)."""
    lines = [f"{k} = {toml_value(v)}" for k, v in config.items() if not isinstance(v, dict)]
    for section, entries in config.items():
        if not isinstance(entries, dict):
            continue
        if all(isinstance(v, dict) for v in entries.values()):
            for name, values in entries.items():
                lines.append(f"\n[{section}.{name}]")
                lines += [f"{k} = {toml_value(v)}" for k, v in values.items()]
        else:
            lines.append(f"\n[{section}]")
            lines += [f"{k} = {toml_value(v)}" for k, v in entries.items()]
    path.write_text("\n".join(lines) + "\n")


@dataclass
class WebServer:
    """A running ``pgvault serve``: ``url``, its ``settings`` and ``catalog`` (opened by the
    test process too), and its log."""

    url: str
    home: Path
    settings: Settings
    catalog: Catalog
    log_path: Path
    _proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @classmethod
    def start(cls, home: Path, config: Mapping[str, Any], env: Mapping[str, str]) -> WebServer:
        """Write ``home/pgvault.toml`` from ``config`` and start the server with ``env``
        added to a clean environment; waits until ``/api/v1/health`` answers.

        Raises:
            RuntimeError: it did not answer within :data:`START_TIMEOUT` (with its log tail).
        """
        home.mkdir(parents=True, exist_ok=True)
        config_file = home / "pgvault.toml"
        write_config(config_file, {"home": str(home), **config})
        settings = load_settings(config_file)
        catalog = Catalog.open(settings.catalog_location)
        port = _free_port()
        log_path = home / "serve.log"
        full_env = {**clean_env(), **env, "PGVAULT_SECRET_KEY": SECRET}
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                [str(PGVAULT), "--config", str(config_file), "serve", "--port", str(port)],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=full_env,
                cwd=home,
                start_new_session=True,
            )
        server = cls(f"http://127.0.0.1:{port}", home, settings, catalog, log_path, proc)
        server._wait_ready()
        return server

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            assert self._proc is not None
            if self._proc.poll() is not None:
                break
            try:
                with urllib.request.urlopen(f"{self.url}/api/v1/health", timeout=2):  # noqa: S310
                    return
            except (urllib.error.URLError, OSError):
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"pgvault serve did not start; log:\n{self.log_tail()}")

    def log_tail(self, lines: int = 40) -> str:
        """The last lines of the server's output."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        """SIGTERM the server's process group (SIGKILL after 20 s) and close the catalog."""
        if self._proc is not None and self._proc.poll() is None:
            os.killpg(self._proc.pid, signal.SIGTERM)
            try:
                self._proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self._proc.pid, signal.SIGKILL)
                self._proc.wait()
        self._proc = None
        self.catalog.engine.dispose()

    def user(self, role: str) -> str:
        """A new user of ``role`` (password :data:`PASSWORD`); its name."""
        from pgvault.service import users

        name = f"{role}_{secrets.token_hex(3)}"
        users.create(self.catalog, name, PASSWORD, role, created_by="test")
        return name


def seed_backups(
    catalog: Catalog, database: str, count: int, *, start: datetime | None = None
) -> list[str]:
    """Insert ``count`` completed backup rows of ``database`` (one per hour from ``start``,
    sizes growing by a byte each) through the catalog's batched writes; their ids. The rows
    name objects that do not exist: they are for listing, paging and retention decisions,
    not for restores."""
    first = start or datetime(2020, 1, 1, tzinfo=UTC)
    template = BackupRecord(
        id="seed",
        database=database,
        dbname=database,
        server="127.0.0.1:5432",
        status="completed",
        storage="local",
        storage_key="seed",
        sha256="0" * 64,
        started_at=first,
        duration_seconds=42.0,
        labels={"seeded": "yes"},
    ).model_dump()
    rows = []
    for i in range(count):
        when = first + timedelta(hours=i)
        rows.append(
            {
                **template,
                "id": f"seed-{database}-{i:06d}{secrets.token_hex(2)}",
                "trigger": "scheduled" if i % 2 else "manual",
                "storage_key": f"{database}/seed/{i}.dump",
                "size_bytes": 10_000_000 + i,
                "started_at": when,
                "finished_at": when + timedelta(seconds=42),
                "row_counts": {"public.items": 1000 + i},
            }
        )
    catalog.save_backups(BackupRecord.model_validate(row) for row in rows)  # per-day totals too
    return [str(r["id"]) for r in rows]
