"""Storage targets at a glance: reachable or not, free space of local ones, and what the
catalog says each holds (the storage page of the dashboard, like Barman's ``check`` of a
backup directory and ``show-servers``' disk usage).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass

from pgvault import storage
from pgvault.catalog import Catalog
from pgvault.config.settings import Settings
from pgvault.errors import PgvaultError
from pgvault.storage.local import LocalStorage


@dataclass(frozen=True)
class TargetStatus:
    """One storage target.

    Attributes:
        name: its config name, or its URL when it has none (the default target).
        url: where it is (a path or ``s3://bucket/prefix``; no credentials are ever in it).
        kind: ``local`` or ``s3``.
        default: backups go here when nothing else is asked.
        reachable: the write check passed; ``problem`` says why not (one line).
        free_bytes, total_bytes: of the file system holding a local target (None for S3).
        backups, stored_bytes: completed backups and copies the catalog records on it.
    """

    name: str
    url: str
    kind: str
    default: bool
    reachable: bool
    problem: str | None
    free_bytes: int | None
    total_bytes: int | None
    backups: int
    stored_bytes: int


def report(settings: Settings, catalog: Catalog) -> list[TargetStatus]:
    """Every configured storage target and the default one, checked now (each check writes
    and removes a small probe object: :meth:`pgvault.storage.Storage.check_writable`).

    Raises:
        CatalogError: the catalog cannot be read (a target's failure is reported, not raised).
    """
    usage = catalog.storage_usage()
    default = settings.default_storage_location
    names = sorted(settings.storage_targets)
    if default not in settings.storage_targets:
        names.append(default)
    return [_status(settings, name, name == default, usage) for name in names]


def _status(
    settings: Settings, name: str, default: bool, usage: dict[str, tuple[int, int]]
) -> TargetStatus:
    url = settings.storage_targets[name].url if name in settings.storage_targets else name
    count, size = usage.get(name, (0, 0))
    if url != name:
        more = usage.get(url, (0, 0))
        count, size = count + more[0], size + more[1]
    problem: str | None = None
    free = total = None
    kind = "s3" if url.startswith("s3://") else "local"
    try:
        store = storage.resolve(settings, name)
        store.check_writable()
        if isinstance(store, LocalStorage):
            disk = shutil.disk_usage(store.root)
            free, total = disk.free, disk.total
    except PgvaultError as exc:
        problem = str(exc)
    except OSError as exc:
        problem = f"cannot read the free space of {url}: {exc.strerror}"
    return TargetStatus(
        name=name,
        url=url,
        kind=kind,
        default=default,
        reachable=problem is None,
        problem=problem,
        free_bytes=free,
        total_bytes=total,
        backups=count,
        stored_bytes=size,
    )
