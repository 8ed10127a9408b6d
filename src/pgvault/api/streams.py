"""Streaming stored bytes to HTTP clients, shared by the route modules."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
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


class ChunkQueue:
    """A bounded hand-over of bytes from a job's thread to a streaming response.

    The job writes (:meth:`write`, blocking while ``depth`` chunks wait, so memory stays at
    ``depth`` chunks whatever the client's speed) and closes; the response iterates
    :meth:`chunks`. When the client goes away (the response's iterator is closed) or stops
    reading for ``stall_seconds``, the next :meth:`write` raises ``BrokenPipeError``, which
    stops the job (a kept backup is then aborted and marked failed: nothing partial stays).
    """

    def __init__(self, depth: int = 8, stall_seconds: float = 600.0) -> None:
        self._queue: queue.Queue[bytes | None] = queue.Queue(depth)
        self._stall = stall_seconds
        self.gone = threading.Event()

    def _put(self, item: bytes | None) -> None:
        waited = 0.0
        while True:
            if self.gone.is_set():
                raise BrokenPipeError("the client closed the download")
            try:
                self._queue.put(item, timeout=0.5)
                return
            except queue.Full:
                waited += 0.5
                if waited >= self._stall:
                    self.gone.set()

    def write(self, data: bytes, /) -> int:
        """Hand ``data`` over (waits while the queue is full); returns its length.

        Raises:
            BrokenPipeError: the client is gone.
        """
        if data:
            self._put(bytes(data))
        return len(data)

    def close(self) -> None:
        """The end of the bytes (the job calls it whatever its outcome)."""
        try:
            self._put(None)
        except BrokenPipeError:
            pass

    def chunks(self, outcome: Callable[[], object]) -> Iterator[bytes]:
        """The bytes as they arrive; at their end ``outcome()`` (which raises when the job
        failed) runs, so a failed dump cuts the response off and the client sees an
        incomplete download rather than a short file that looks whole."""
        try:
            while True:
                chunk = self._queue.get()
                if chunk is None:
                    break
                yield chunk
            outcome()
        finally:
            self.gone.set()
