"""Streams to and from one S3 object: the reader of a download and the streaming multipart
upload (one part uploading in a thread while the next one fills; nothing visible under the
key until it completes).

Used by :class:`pgvault.storage.s3.S3Storage`; every botocore error becomes a one-line
:class:`StorageError` through the store's ``errors`` context.
"""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from typing import Any, Protocol

from pgvault.errors import StorageError
from pgvault.storage.base import ObjectInfo, ObjectWriter

log = logging.getLogger(__name__)


class S3Object(Protocol):
    """What a stream needs of the store it reads or writes (:class:`pgvault.storage.s3.
    S3Storage` is one): the client and bucket, its limits, and its error translation."""

    MAX_PARTS: int
    bucket: str

    @property
    def client(self) -> Any:
        """The boto3 S3 client."""

    @property
    def checksum_algorithm(self) -> str | None:
        """The checksum algorithm of uploads, if any."""

    def errors(self, action: str) -> AbstractContextManager[None]:
        """A context turning botocore errors during ``action`` into one-line StorageErrors."""

    def new_object_args(self) -> dict[str, Any]:
        """Arguments of every new object (encryption, storage class, object lock)."""

    def part_size_for(self, part_number: int) -> int:
        """The size in bytes of part ``part_number`` (1-based)."""

    def abort_upload(self, object_key: str, upload_id: str) -> None:
        """Abort one multipart upload."""

    def discard_partial(self, key: str) -> None:
        """Abort every unfinished multipart upload of ``key``."""

    def uri(self, object_key: str) -> str:
        """``s3://bucket/key`` of an object, for messages."""


class S3Reader(io.RawIOBase):
    """A botocore ``StreamingBody`` as a raw binary stream whose errors are StorageErrors."""

    def __init__(self, body: Any, store: S3Object, uri: str) -> None:
        self._body = body
        self._store = store
        self._uri = uri

    def readable(self) -> bool:
        return True

    def readinto(self, target: bytearray | memoryview) -> int:  # type: ignore[override]
        with self._store.errors(f"download of {self._uri}"):
            data: bytes = self._body.read(len(target))
        n = len(data)
        memoryview(target)[:n] = data
        return n

    def readall(self) -> bytes:
        with self._store.errors(f"download of {self._uri}"):
            data: bytes = self._body.read()
        return data

    def read(self, size: int | None = -1, /) -> bytes:
        """Up to ``size`` bytes (all when negative or None), straight from the response: one
        allocation, no intermediate buffer."""
        with self._store.errors(f"download of {self._uri}"):
            data: bytes = self._body.read(None if size is None or size < 0 else size)
        return data

    def close(self) -> None:
        if not self.closed:
            try:
                self._body.close()
            finally:
                super().close()


class MultipartWriter(ObjectWriter):
    """One streaming upload: each full part is sent by an uploader thread while the caller
    fills the next one, so the producer (pg_dump) never waits for a part's upload unless
    the one before it is still on its way. At most two parts are in memory; parts are sent
    one at a time, in order.

    An upload request that fails is raised by the next :meth:`write` that fills a part, or
    by :meth:`commit`; the writer is then unusable (abort it).

    :meth:`abort` is robust under load and outages: it waits for a part on its way, then
    retries for up to :attr:`ABORT_SECONDS`, and when a request starting the upload got no
    answer (a timeout: the server may still create it), it lists the key's unfinished
    uploads and aborts them, again after :attr:`SETTLE_SECONDS`, so a late-created upload is
    not left behind.
    """

    ABORT_SECONDS = 10.0
    SETTLE_SECONDS = (1.0, 2.0)

    def __init__(
        self,
        store: S3Object,
        key: str,
        object_key: str,
        extra_args: dict[str, Any] | None = None,
    ) -> None:
        self._store = store
        self._extra = dict(extra_args or {})
        self._key = key
        self._object_key = object_key
        self._uri = store.uri(object_key)
        self._buffer = bytearray()
        self._upload_id: str | None = None
        self._parts: list[dict[str, Any]] = []  # written by the uploader thread only
        self._sent = 0  # parts handed to the uploader thread
        self._uploaded = 0  # bytes in completed parts
        self._state = "open"  # open, failed, committed, aborted
        self._uncertain = False  # a start request got no answer: an upload may exist
        self._uploader: ThreadPoolExecutor | None = None
        self._sending: Future[None] | None = None  # the part on its way

    def write(self, data: bytes, /) -> int:
        """Append ``data``; hands the buffer to the uploader thread as a part once it is full
        and more data follows (waiting first for the part before it), so an object of at most
        one part is one ``PutObject``.

        Returns:
            ``len(data)`` in bytes.

        Raises:
            StorageError: an upload request failed (the writer is then unusable: abort it).
        """
        self._check_open()
        view = memoryview(data).cast("B")
        total = len(view)
        while view:
            size = self._store.part_size_for(self._sent + 1)
            if len(self._buffer) >= size:  # a full part with more after it: not the last
                self._send()
                continue
            room = size - len(self._buffer)
            self._buffer += view[:room]
            view = view[room:]
        return total

    def commit(self) -> ObjectInfo:
        """Complete the upload (``PutObject`` when everything fits in one part).

        Returns:
            the object's info; ``modified`` is this machine's clock at completion (UTC).

        Raises:
            StorageError: a request failed; the upload is aborted and nothing is visible.
        """
        self._check_open()
        try:
            if self._sent == 0:
                with self._store.errors(f"upload of {self._uri}"):
                    self._store.client.put_object(
                        Bucket=self._store.bucket,
                        Key=self._object_key,
                        Body=self._buffer,
                        **self._store.new_object_args(),
                        **self._extra,
                    )
                self._uploaded = len(self._buffer)
            else:
                if self._buffer:
                    self._send()
                self._wait_sent()
                self._complete()
        except BaseException:
            self._state = "failed"
            self.abort()
            raise
        self._state = "committed"
        self._buffer = bytearray()
        self._stop_uploader()
        log.debug("stored %s (%d bytes, %d parts)", self._uri, self._uploaded, len(self._parts))
        return ObjectInfo(self._key, self._uploaded, datetime.now(UTC))

    def abort(self) -> None:
        """Abort the multipart upload, if one was (or may have been) started, after the part
        on its way (if any) ended; never raises (what cannot be aborted in
        :attr:`ABORT_SECONDS` is logged: the backup's cleanup and the next start remove it
        through :meth:`S3Storage.discard_partial`)."""
        if self._state in ("committed", "aborted"):
            return
        self._state = "aborted"
        self._buffer = bytearray()
        sending, self._sending = self._sending, None
        if sending is not None:
            try:
                sending.result()  # bounded by the client's timeouts and attempts
            except BaseException as exc:  # abort() never raises; the caller has its error
                log.debug("part upload of %s ended with %s before the abort", self._uri, exc)
        self._stop_uploader()
        upload_id, self._upload_id = self._upload_id, None
        deadline = time.monotonic() + self.ABORT_SECONDS
        if upload_id is not None:
            self._retry(lambda: self._store.abort_upload(self._object_key, upload_id), deadline)
        if self._uncertain:
            for pause in (0.0, *self.SETTLE_SECONDS):
                time.sleep(pause)
                self._retry(lambda: self._store.discard_partial(self._key), deadline)

    def _retry(self, action: Callable[[], None], deadline: float) -> None:
        delay = 0.5
        while True:
            try:
                action()
                return
            except Exception as exc:  # abort() never raises
                if time.monotonic() + delay > deadline:
                    log.warning("unfinished upload of %s left behind for now: %s", self._uri, exc)
                    return
                time.sleep(delay)
                delay = min(delay * 2, 5.0)

    def _check_open(self) -> None:
        if self._state == "failed":
            raise StorageError(f"an earlier request of the upload of {self._uri} failed")
        if self._state != "open":
            raise StorageError(f"the upload of {self._uri} is already {self._state}")

    def _send(self) -> None:
        """Hand the buffer to the uploader thread as the next part, once the part before it
        is stored (its error, if any, is raised here)."""
        self._wait_sent()
        body, self._buffer = self._buffer, bytearray()
        self._sent += 1
        if self._uploader is None:
            self._uploader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="s3-part")
        self._sending = self._uploader.submit(self._upload_part, body, self._sent)

    def _wait_sent(self) -> None:
        """Wait for the part on its way, if any.

        Raises:
            StorageError: its upload failed (the writer is then failed).
        """
        sending, self._sending = self._sending, None
        if sending is None:
            return
        try:
            sending.result()
        except BaseException:
            self._state = "failed"
            raise

    def _stop_uploader(self) -> None:
        if self._uploader is not None:
            self._uploader.shutdown(wait=True)
            self._uploader = None

    def _upload_part(self, body: bytearray, number: int) -> None:
        """Send ``body`` as part ``number`` (starting the multipart upload first if needed);
        runs in the uploader thread, one part at a time."""
        store = self._store
        checksum = store.checksum_algorithm
        checksum_args = {"ChecksumAlgorithm": checksum} if checksum else {}
        if number > store.MAX_PARTS:
            raise StorageError(
                f"upload of {self._uri} needs more than {store.MAX_PARTS} parts: "
                "the object is larger than S3 allows"
            )
        if self._upload_id is None:
            self._uncertain = True  # until the answer arrives
            with store.errors(f"start of the upload of {self._uri}"):
                created = store.client.create_multipart_upload(
                    Bucket=store.bucket,
                    Key=self._object_key,
                    **store.new_object_args(),
                    **self._extra,
                    **checksum_args,
                )
            self._upload_id = str(created["UploadId"])
            self._uncertain = False
        with store.errors(f"upload of part {number} of {self._uri}"):
            response = store.client.upload_part(
                Bucket=store.bucket,
                Key=self._object_key,
                UploadId=self._upload_id,
                PartNumber=number,
                Body=body,
                **checksum_args,
            )
        part = {"ETag": response["ETag"], "PartNumber": number}
        if checksum and f"Checksum{checksum}" in response:
            part[f"Checksum{checksum}"] = response[f"Checksum{checksum}"]
        self._parts.append(part)
        self._uploaded += len(body)
        log.debug("uploaded part %d of %s (%d bytes so far)", number, self._uri, self._uploaded)

    def _complete(self) -> None:
        store = self._store
        with store.errors(f"completion of the upload of {self._uri}"):
            store.client.complete_multipart_upload(
                Bucket=store.bucket,
                Key=self._object_key,
                UploadId=self._upload_id,
                MultipartUpload={"Parts": self._parts},
            )
        self._upload_id = None
