"""Reading stored backups back out: to a local file (optionally without its compression and
encryption layers), or as a stream for the service's downloads."""

from __future__ import annotations

from pathlib import Path
from typing import IO, cast

from pgvault import private
from pgvault.backups import copies
from pgvault.catalog import Catalog
from pgvault.catalog.records import BackupRecord
from pgvault.config.settings import Settings
from pgvault.dumps.layers import DecryptHook, copy_stream, open_layers
from pgvault.errors import NotFound, StorageError
from pgvault.progress import ProgressEvent, Report


def download(
    settings: Settings,
    catalog: Catalog,
    record: BackupRecord,
    output: Path,
    *,
    decompress: bool = False,
    decrypt: DecryptHook | None = None,
    progress: Report | None = None,
) -> int:
    """Copy a stored backup to ``output``; with ``decompress`` remove its zstd/gzip (and age)
    layers so plain ``pg_restore``/``psql`` reads the file. Returns the bytes written.
    ``progress`` gets ``downloading`` events: stored bytes read of the backup's size.

    Raises:
        NotFound: the object is missing.
        StorageError: it cannot be read or ``output`` cannot be written.
    """
    store = copies.readable_location(settings, catalog, record)
    partial = output.with_name(output.name + ".partial")
    try:
        with store.open_read(record.storage_key) as stored, private.create(partial) as out:
            raw = cast(IO[bytes], _Counted(stored, progress, record.size_bytes))
            stream = open_layers(raw, decrypt).stream if decompress else raw
            written = copy_stream(stream, out)
        partial.replace(output)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise StorageError(f"cannot write {output}: {exc.strerror}") from exc
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return written


class _Counted:
    """Reads through ``raw``, reporting the bytes read so far of ``total``."""

    def __init__(self, raw: IO[bytes], progress: Report | None, total: int | None) -> None:
        self._raw = raw
        self._progress = progress
        self._total = total
        self.done = 0

    def read(self, size: int = -1) -> bytes:
        data = self._raw.read(size)
        self.done += len(data)
        if self._progress is not None:
            self._progress(ProgressEvent("downloading", self.done, self._total))
        return data

    def close(self) -> None:
        self._raw.close()


def open_backup(
    settings: Settings, catalog: Catalog, backup_id: str
) -> tuple[BackupRecord, IO[bytes]]:
    """A completed backup's record and a stream of its stored bytes (from the first intact
    copy); the caller closes the stream.

    Raises:
        NotFound: unknown id, not completed, or no intact stored object.
    """
    record = catalog.get_backup(backup_id)
    if record.status != "completed":
        raise NotFound(f"backup {record.id} is {record.status}: only completed ones download")
    store = copies.readable_location(settings, catalog, record)
    return record, store.open_read(record.storage_key)


def download_name(record: BackupRecord) -> str:
    """The file name a download is offered as: the last part of its storage key."""
    return record.storage_key.rsplit("/", 1)[-1]
