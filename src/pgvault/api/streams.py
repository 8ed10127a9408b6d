"""Streaming stored bytes to HTTP clients, shared by the route modules."""

from __future__ import annotations

from collections.abc import Iterator
from typing import IO

from fastapi.responses import StreamingResponse

from pgvault import backups
from pgvault.catalog.records import BackupRecord

CHUNK = 1024 * 1024


def chunks(stream: IO[bytes]) -> Iterator[bytes]:
    """Read ``stream`` in 1 MiB chunks, closing it at the end (or when the client leaves)."""
    try:
        while chunk := stream.read(CHUNK):
            yield chunk
    finally:
        stream.close()


def backup_download(record: BackupRecord, stream: IO[bytes]) -> StreamingResponse:
    """The stored bytes of ``record`` as an attachment named after its file."""
    return StreamingResponse(
        chunks(stream),
        media_type="application/octet-stream",
        headers={
            "Content-Disposition": f'attachment; filename="{backups.download_name(record)}"',
            "Content-Length": str(record.size_bytes),
        },
    )
