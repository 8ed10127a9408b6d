"""Reading a ``multipart/form-data`` upload as a stream, without a spooled temporary file.

Starlette's ``UploadFile`` receives the whole body into a temporary file before the handler
runs; an upload of a dump instead goes straight from the socket into storage while it is
checked (:func:`pgvault.backups.receive_upload`). A :class:`MultipartStream` is used from a
synchronous (threadpool) handler: it pulls the body chunk by chunk from the event loop
(``anyio.from_thread.run``), parses it with python-multipart's push parser, returns the form
fields that come before the file, and then gives the file's bytes through a file-like
``read`` with at most one body chunk (and one 1 MiB read) in memory.

The form fields (``confirm``, ``mode``, ``passkey``) must come before the file part (as
curl ``-F`` in that order, httpx and browsers' ``FormData`` send them).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anyio.from_thread
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import Request

from pgvault.errors import ArchiveError, ConfigError, TooLarge

MAX_FIELD_BYTES = 64 * 1024


class MultipartStream:
    """One multipart request body: the fields before the file, then the file as a stream.

    Args:
        request: the request, read from a synchronous handler's worker thread.
        file_field: the form field holding the file (``file``).

    Raises:
        ConfigError: not ``multipart/form-data``, no boundary, or a malformed body.
    """

    def __init__(self, request: Request, file_field: str = "file") -> None:
        content_type, params = parse_options_header(request.headers.get("content-type", ""))
        boundary = params.get(b"boundary")
        if content_type != b"multipart/form-data" or not boundary:
            raise ConfigError("send the upload as multipart/form-data with a 'file' field")
        self._body: AsyncIterator[bytes] = request.stream().__aiter__()
        self._file_field = file_field
        self._ended = False
        self.fields: dict[str, str] = {}
        self.filename: str | None = None
        self._in_file = False
        self._file_done = False
        self._found_file = False
        self._field_name: str | None = None
        self._field_value = bytearray()
        self._header_name = b""
        self._header_value = b""
        self._headers: dict[bytes, bytes] = {}
        self._chunks: list[bytes] = []
        callbacks: Any = {
            "on_part_begin": self._part_begin,
            "on_header_field": self._header_field,
            "on_header_value": self._header_value_part,
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._part_data,
            "on_part_end": self._part_end,
        }
        self._parser = MultipartParser(boundary, callbacks)

    # --- python-multipart callbacks ---------------------------------------------------------
    def _part_begin(self) -> None:
        self._headers = {}
        self._field_name = None
        self._field_value = bytearray()

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def _header_value_part(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def _header_end(self) -> None:
        self._headers[self._header_name.lower()] = self._header_value
        self._header_name, self._header_value = b"", b""

    def _headers_finished(self) -> None:
        _disposition, params = parse_options_header(self._headers.get(b"content-disposition", b""))
        name = params.get(b"name", b"").decode("utf-8", "replace")
        if name == self._file_field and not self._found_file:
            self._found_file = self._in_file = True
            raw_name = params.get(b"filename")
            self.filename = raw_name.decode("utf-8", "replace") if raw_name else None
        else:
            self._field_name = name

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self._in_file:
            self._chunks.append(data[start:end])
        elif self._field_name is not None and not self._found_file:
            self._field_value += data[start:end]
            if len(self._field_value) > MAX_FIELD_BYTES:
                raise ConfigError(f"form field {self._field_name!r} is too long")

    def _part_end(self) -> None:
        if self._in_file:
            self._in_file, self._file_done = False, True
        elif self._field_name is not None and not self._found_file:
            self.fields[self._field_name] = self._field_value.decode("utf-8", "replace")

    # --- pulling the body -----------------------------------------------------------------
    def _pull(self) -> bool:
        """Feed the next body chunk to the parser; False at the end of the body."""
        if self._ended:
            return False
        try:
            chunk = anyio.from_thread.run(self._next_chunk)
        except StopAsyncIteration:
            self._ended = True
            self._parser.finalize()
            return False
        if chunk:
            try:
                self._parser.write(chunk)
            except ConfigError:
                raise
            except Exception as exc:  # python-multipart's parse errors
                raise ConfigError(f"the multipart body is malformed: {exc}") from exc
        return True

    async def _next_chunk(self) -> bytes:
        return await self._body.__anext__()

    def read_fields(self) -> dict[str, str]:
        """Parse up to the start of the file part; returns the fields seen before it.

        Raises:
            ConfigError: the body ends without a file part.
        """
        while not self._found_file:
            if not self._pull():
                raise ConfigError(f"the form has no {self._file_field!r} file part")
        return dict(self.fields)

    def read(self, size: int = -1) -> bytes:
        """Up to ``size`` bytes of the file (all of it for -1); ``b""`` at its end."""
        self.read_fields()
        wanted = size if size >= 0 else None
        while not self._file_done and (
            wanted is None or sum(len(c) for c in self._chunks) < wanted
        ):
            if not self._pull():
                if not self._file_done:
                    raise ArchiveError("the upload was cut short (no closing boundary)")
                break
        data = b"".join(self._chunks)
        if wanted is None or len(data) <= wanted:
            self._chunks = []
            return data
        self._chunks = [data[wanted:]]
        return data[:wanted]


def check_length(request: Request, limit: int) -> None:
    """Refuse at once a body whose ``Content-Length`` is over ``limit`` bytes (plus room for
    the form's other parts); a body without one is counted as it streams.

    Raises:
        TooLarge: the announced length is over the limit.
    """
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > limit + 64 * 1024:
        raise TooLarge(f"the upload is larger than the limit of {limit} bytes")


def multipart_body(fields: dict[str, dict[str, Any]], required: list[str]) -> dict[str, Any]:
    """``openapi_extra`` documenting a multipart request body of ``fields`` then ``file``
    (the handler reads the body itself, so FastAPI cannot derive it)."""
    properties = {**fields, "file": {"type": "string", "format": "binary"}}
    return {
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "properties": properties,
                        "required": [*required, "file"],
                    },
                    "encoding": {"file": {"contentType": "application/octet-stream"}},
                }
            },
        }
    }
