"""age encryption of backup streams (pyrage), readable by the standard ``age`` CLI.

The stored object of an encrypted backup is ``age -r RECIPIENT`` output of the compressed
dump: ``age -d -i key.txt backup.dump.zst.age | zstd -d | pg_restore ...`` recovers it.
pyrage's ``encrypt_io``/``decrypt_io`` stream between file objects; they run in a worker
thread joined to the push-style write chain (and pull-style read chain) by a bounded queue,
so memory stays at a few chunks whatever the size.
"""

from __future__ import annotations

import io
import queue
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any, cast

import pyrage

from pgvault.dumps.layers import QueueReader, Sink
from pgvault.errors import ArchiveError, ConfigError

_QUEUE_CHUNKS = 8
_END = b""


def parse_recipients(texts: Sequence[str]) -> list[Any]:
    """age X25519 recipients (``age1...``).

    Raises:
        ConfigError: a value is not an age recipient (the message shows its start only).
    """
    recipients = []
    for text in texts:
        try:
            recipients.append(pyrage.x25519.Recipient.from_str(text.strip()))
        except Exception as exc:  # pyrage raises its own error types
            raise ConfigError(
                f"invalid age recipient {text.strip()[:12]!r}...: expected an age1... public key"
            ) from exc
    return recipients


def load_identities(path: Path) -> list[Any]:
    """The age identities (``AGE-SECRET-KEY-1...`` lines) in a key file; ``#`` lines skipped.

    Raises:
        ConfigError: unreadable file or no valid identity in it (never shows the key).
    """
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise ConfigError(f"cannot read age identity file {path}: {exc.strerror}") from exc
    identities = []
    for line in lines:
        line = line.strip()
        if line and not line.startswith("#"):
            try:
                identities.append(pyrage.x25519.Identity.from_str(line))
            except Exception as exc:
                raise ConfigError(f"age identity file {path} holds an invalid key") from exc
    if not identities:
        raise ConfigError(f"age identity file {path} holds no AGE-SECRET-KEY line")
    return identities


class _SinkWriter(io.RawIOBase):
    def __init__(self, sink: Sink) -> None:
        self._sink = sink

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        chunk = bytes(data)
        self._sink.write(chunk)
        return len(chunk)


class Encryptor:
    """A write-chain stage: plaintext in, age ciphertext out to ``sink``."""

    def __init__(self, sink: Sink, recipients: list[Any]) -> None:
        self._chunks: queue.Queue[bytes] = queue.Queue(maxsize=_QUEUE_CHUNKS)
        self._error: BaseException | None = None
        reader = QueueReader(self._chunks)
        writer = _SinkWriter(sink)

        def work() -> None:
            try:
                pyrage.encrypt_io(reader, writer, recipients)
            except BaseException as exc:  # surfaced by write()/close()
                self._error = exc
                while True:  # unblock the producer
                    try:
                        self._chunks.get_nowait()
                    except queue.Empty:
                        break

        self._thread = threading.Thread(target=work, name="age-encrypt", daemon=True)
        self._thread.start()

    def write(self, data: bytes, /) -> int:
        """Queue ``data`` for encryption; returns its length in bytes."""
        if self._error is not None:
            raise self._error
        if data:
            self._chunks.put(bytes(data))
        return len(data)

    def close(self) -> None:
        """Finish the age stream (waits for the worker); re-raises its error."""
        self._chunks.put(_END)
        self._thread.join()
        if self._error is not None:
            raise self._error


class _DecryptingReader(io.RawIOBase):
    def __init__(self, encrypted: IO[bytes], identities: list[Any]) -> None:
        self._chunks: queue.Queue[bytes] = queue.Queue(maxsize=_QUEUE_CHUNKS)
        self._reader = QueueReader(self._chunks)
        self._error: BaseException | None = None
        self._encrypted = encrypted
        self._closed_early = threading.Event()
        chunks = self._chunks

        class _Out(io.RawIOBase):
            def writable(self) -> bool:
                return True

            def write(inner, data: Any) -> int:  # noqa: N805
                if self._closed_early.is_set():
                    raise BrokenPipeError("reader closed")
                chunk = bytes(data)
                if chunk:
                    chunks.put(chunk)
                return len(chunk)

        def work() -> None:
            try:
                pyrage.decrypt_io(encrypted, _Out(), identities)
            except BaseException as exc:
                self._error = exc
            finally:
                chunks.put(_END)

        self._thread = threading.Thread(target=work, name="age-decrypt", daemon=True)
        self._thread.start()

    def readable(self) -> bool:
        return True

    def readinto(self, target: bytearray | memoryview) -> int:  # type: ignore[override]
        n = self._reader.readinto(target)
        if n == 0 and self._error is not None and not self._closed_early.is_set():
            raise ArchiveError(
                "cannot decrypt this backup: no identity matches its recipients",
                needs="identity",
            ) from self._error
        return n

    def close(self) -> None:
        if not self.closed:
            self._closed_early.set()
            while self._thread.is_alive():
                try:
                    self._chunks.get(timeout=0.1)
                except queue.Empty:
                    pass
            self._encrypted.close()
        super().close()


class Decryptor:
    """A :class:`pgvault.dumps.layers.DecryptHook` holding the identities of one key file."""

    def __init__(self, identities: list[Any]) -> None:
        self._identities = identities

    def __call__(self, encrypted: IO[bytes], /) -> IO[bytes]:
        """A readable stream of the plaintext of ``encrypted``."""
        return cast(IO[bytes], io.BufferedReader(_DecryptingReader(encrypted, self._identities)))


def decryptor_from(identity_file: Path | None) -> Decryptor | None:
    """A :class:`Decryptor` for ``--identity FILE`` / ``PGVAULT_AGE_IDENTITY_FILE``, or None."""
    return None if identity_file is None else Decryptor(load_identities(identity_file))
