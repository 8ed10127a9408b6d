"""Backups in Amazon S3 or an S3-compatible store (MinIO, Ceph, R2), through the S3 API.

Layout: the target ``s3://bucket/prefix`` keeps the object ``key`` at ``prefix/key`` in
``bucket`` (at ``key`` when there is no prefix); every key passes :func:`validate_key`.

Writes are streaming multipart uploads (:class:`S3Storage.open_write`): at most one part is
held in memory, each part is uploaded as it fills, and nothing is visible under the key
until ``CompleteMultipartUpload`` (or a single ``PutObject`` for objects smaller than one
part). ``abort()`` aborts the upload; an upload left open by a crash is aborted by
:meth:`S3Storage.discard_partial` (pgvault calls it when it marks a backup interrupted). A
bucket lifecycle rule ``AbortIncompleteMultipartUpload`` is a good second line of defence.

Credentials, region and endpoint come from the target settings first, then the standard AWS
chain: ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``/``AWS_SESSION_TOKEN``,
``AWS_PROFILE`` or the target's ``profile``, ``AWS_REGION``, ``AWS_ENDPOINT_URL(_S3)``, shared
config files, then container and instance roles. Requests are retried in botocore's
``standard`` mode, :attr:`S3Storage.MAX_ATTEMPTS` attempts unless ``AWS_MAX_ATTEMPTS`` (or the
profile's ``max_attempts``) says otherwise. Checksums follow botocore's
``request_checksum_calculation`` (``AWS_REQUEST_CHECKSUM_CALCULATION=when_required`` helps
stores that reject the newer CRC headers).

Every botocore/boto3 error becomes a one-line :class:`StorageError` (or :class:`NotFound`)
at this boundary; messages name the bucket and key, never a credential.

Idea from Barman's ``CloudInterface`` (``barman/cloud.py``): the provider's limits are class
constants, and the multipart steps are small methods.
"""

from __future__ import annotations

import importlib.util
import io
import logging
import os
import re
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import IO, Any, cast

from pgvault.config.settings import StorageTargetSettings
from pgvault.errors import ConfigError, NotFound, StorageError
from pgvault.storage.base import ObjectInfo, ObjectWriter, Storage, validate_key
from pgvault.storage.s3_errors import (
    MISSING_KEY_CODES,
    boto_errors,
    check_writable,
    error_code,
)
from pgvault.storage.s3_streams import MultipartWriter, S3Reader
from pgvault.storage.s3_times import parse_timestamp

log = logging.getLogger(__name__)

MiB = 1024 * 1024
GiB = 1024 * MiB


_CLIENTS: dict[tuple[Any, ...], Any] = {}  # boto3 clients by settings and AWS environment
_CLIENTS_LOCK = threading.Lock()


def _utc(value: datetime) -> datetime:
    return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)


class S3Storage(Storage):
    """Backups in an S3 bucket under a prefix: ``s3://bucket/prefix``.

    Args:
        target: the target's settings (``url`` and the S3 options: region, endpoint_url,
            path_style, profile, sse, sse_kms_key_id, storage_class).
        name: the target's name in the config (default: its URL).
        part_size: bytes per multipart part (default :attr:`DEFAULT_PART_SIZE`), between
            :attr:`MIN_PART_SIZE` and :attr:`MAX_PART_SIZE`.
        max_attempts: attempts per request, including the first (default ``AWS_MAX_ATTEMPTS``,
            the profile's ``max_attempts``, else :attr:`MAX_ATTEMPTS`).
        connect_timeout: seconds to open a connection (default :attr:`CONNECT_TIMEOUT`).
        read_timeout: seconds to wait for bytes on an open connection
            (default :attr:`READ_TIMEOUT`).
        lock_days: Object Lock period of new objects (days) when the target has
            ``object_lock`` but no ``object_lock_days`` (the database's retention policy
            gives it: :func:`pgvault.storage.resolve`).

    Attributes: ``bucket``; ``prefix`` (``"a/b/"``, or ``""`` for the bucket's root);
    ``part_size`` (bytes); ``object_args`` (encryption and storage class of new objects);
    ``client`` (the boto3 client, made on first use).

    Raises:
        ConfigError: the URL has no bucket, a setting is invalid, or boto3 is not installed.
    """

    scheme = "s3"

    MIN_PART_SIZE = 5 * MiB
    """S3's smallest part (every part but the last), bytes."""
    MAX_PART_SIZE = 5 * GiB
    """S3's largest part, bytes."""
    MAX_PARTS = 10_000
    """S3's limit of parts per upload."""
    DEFAULT_PART_SIZE = 8 * MiB
    """Bytes per part for the first :attr:`PART_GROWTH_EVERY` parts (7.8 GiB with the
    default); a writer holds two (one uploading while the next fills)."""
    PART_GROWTH_EVERY = 1_000
    """The part size doubles after every this many parts (capped at :attr:`MAX_PART_SIZE`;
    S3 accepts parts of different sizes), so a stream of unknown length can reach S3's
    5 TiB object limit within :attr:`MAX_PARTS` parts."""
    LIST_PAGE_SIZE = 1_000
    """Keys per ``ListObjectsV2`` page."""
    MAX_ATTEMPTS = 5
    """Attempts per request (first one included), botocore ``standard`` retry mode."""
    CONNECT_TIMEOUT = 10.0
    """Seconds to open a connection."""
    READ_TIMEOUT = 60.0
    """Seconds without a byte on an open connection before the request fails."""
    READ_BUFFER_SIZE = 1 * MiB
    """Bytes buffered by the readers :meth:`open_read` returns."""
    SSE_MODES = ("AES256", "aws:kms", "aws:kms:dsse")
    """Accepted values of the target's ``sse`` setting."""

    def __init__(
        self,
        target: StorageTargetSettings,
        name: str | None = None,
        *,
        part_size: int | None = None,
        max_attempts: int | None = None,
        connect_timeout: float | None = None,
        read_timeout: float | None = None,
        lock_days: float | None = None,
    ) -> None:
        super().__init__(target.url, name)
        self.target = target
        self.bucket, self.prefix = self._parse_url(target.url)
        if part_size is None and target.part_size_mib is not None:
            part_size = target.part_size_mib * MiB
        self.part_size = self.DEFAULT_PART_SIZE if part_size is None else part_size
        if not self.MIN_PART_SIZE <= self.part_size <= self.MAX_PART_SIZE:
            raise ConfigError(
                f"S3 part size {self.part_size} bytes is outside S3's limits "
                f"({self.MIN_PART_SIZE}..{self.MAX_PART_SIZE} bytes)"
            )
        self._max_attempts = max_attempts
        self._connect_timeout = connect_timeout or self.CONNECT_TIMEOUT
        self._read_timeout = read_timeout or self.READ_TIMEOUT
        self.object_args = self._encryption_args(target)
        self.locked = target.object_lock or target.object_lock_days is not None
        self.lock_days = target.object_lock_days or lock_days
        if importlib.util.find_spec("boto3") is None:
            raise ConfigError(
                f"storage {target.url} needs boto3: install it with pip install 'pgvault[s3]'"
            )

    def new_object_args(self) -> dict[str, Any]:
        """Arguments for a new backup object: encryption, storage class, and on an Object
        Lock target the retain-until date (now + :attr:`lock_days`, UTC).

        Raises:
            ConfigError: the target has ``object_lock`` but no period is known.
        """
        args: dict[str, Any] = dict(self.object_args)
        if self.locked:
            if self.lock_days is None:
                raise ConfigError(
                    f"storage target {self.name} has object_lock but no object_lock_days, and "
                    "the database's retention policy has no time-based rule to take the "
                    "period from: set object_lock_days on the target"
                )
            args["ObjectLockMode"] = self.target.object_lock_mode
            args["ObjectLockRetainUntilDate"] = datetime.now(UTC) + timedelta(days=self.lock_days)
        return args

    @staticmethod
    def _parse_url(url: str) -> tuple[str, str]:
        """``s3://bucket/a/b`` -> ``("bucket", "a/b/")``; ``s3://bucket`` -> ``("bucket", "")``.

        Raises:
            ConfigError: no bucket, or an unsafe prefix.
        """
        rest = url.removeprefix("s3://")
        bucket, _, prefix = rest.partition("/")
        prefix = prefix.strip("/")
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", bucket):
            raise ConfigError(f"storage URL {url!r} has no valid bucket: use s3://bucket/prefix")
        if prefix:
            try:
                validate_key(prefix)
            except StorageError as exc:
                raise ConfigError(f"storage URL {url!r} has an unsafe prefix: {exc}") from exc
        return bucket, f"{prefix}/" if prefix else ""

    @classmethod
    def _encryption_args(cls, target: StorageTargetSettings) -> dict[str, str]:
        """``ServerSideEncryption``/``SSEKMSKeyId``/``StorageClass`` for ``PutObject`` and
        ``CreateMultipartUpload``.

        Raises:
            ConfigError: an unknown ``sse`` mode, or a KMS key without ``aws:kms``.
        """
        args: dict[str, str] = {}
        if target.sse is not None:
            if target.sse not in cls.SSE_MODES:
                raise ConfigError(
                    f"unknown S3 sse {target.sse!r} for {target.url}: "
                    f"use one of {', '.join(cls.SSE_MODES)}"
                )
            args["ServerSideEncryption"] = target.sse
        if target.sse_kms_key_id is not None:
            if not (target.sse or "").startswith("aws:kms"):
                raise ConfigError(f"sse_kms_key_id for {target.url} needs sse = 'aws:kms'")
            args["SSEKMSKeyId"] = target.sse_kms_key_id
        if target.storage_class is not None:
            args["StorageClass"] = target.storage_class
        return args

    @cached_property
    def client(self) -> Any:
        """The boto3 client of the target and the AWS chain, shared by the process's stores of
        the same settings and AWS environment (thread-safe). Raises StorageError if invalid."""
        aws = tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith("AWS_")))
        limits = (self._max_attempts, self._connect_timeout, self._read_timeout)
        key = (self.target.model_dump_json(), limits, aws)
        with _CLIENTS_LOCK:
            if key not in _CLIENTS:
                _CLIENTS[key] = self._new_client()
            return _CLIENTS[key]

    def _new_client(self) -> Any:
        import boto3
        import botocore.session
        from botocore.config import Config

        with boto_errors(f"client setup for {self.url}", self.bucket):
            core = botocore.session.Session(profile=self.target.profile)
            parsers = core.get_component("response_parser_factory")
            parsers.set_parser_defaults(timestamp_parser=parse_timestamp)
            attempts = self._max_attempts or core.get_config_variable("max_attempts")
            config = Config(
                region_name=self.target.region,
                connect_timeout=self._connect_timeout,
                read_timeout=self._read_timeout,
                retries={"mode": "standard", "total_max_attempts": attempts or self.MAX_ATTEMPTS},
                s3={"addressing_style": "path" if self.target.path_style else "auto"},
                tcp_keepalive=True,
                user_agent_extra="pgvault",
            )
            session = boto3.session.Session(botocore_session=core)
            return session.client("s3", endpoint_url=self.target.endpoint_url, config=config)

    @property
    def checksum_algorithm(self) -> str | None:
        """``"CRC32"`` when botocore adds checksums to uploads (its default), else None."""
        calculation = getattr(self.client.meta.config, "request_checksum_calculation", None)
        return "CRC32" if calculation == "when_supported" else None

    def object_key(self, key: str) -> str:
        """The S3 key of ``key``: the target's prefix + the validated key.

        Raises:
            StorageError: ``key`` is unsafe.
        """
        return self.prefix + validate_key(key)

    def uri(self, object_key: str) -> str:
        """``s3://bucket/<object_key>``, for messages."""
        return f"s3://{self.bucket}/{object_key}"

    def part_size_for(self, part_number: int) -> int:
        """Bytes in part ``part_number`` (1-based) of an upload, all parts but the last."""
        return min(
            self.part_size << ((part_number - 1) // self.PART_GROWTH_EVERY), self.MAX_PART_SIZE
        )

    def errors(self, action: str) -> AbstractContextManager[None]:
        """Context manager translating botocore errors of ``action`` (see :func:`_boto_errors`)."""
        return boto_errors(action, self.bucket)

    def open_write(self, key: str) -> ObjectWriter:
        """Start a streaming upload of ``key``; nothing is sent before the first full part.

        Raises:
            StorageError: ``key`` is unsafe.
        """
        return MultipartWriter(self, key, self.object_key(key))

    def open_read(self, key: str) -> IO[bytes]:
        """A buffered readable stream of the object (``read(n)``, ``close()``).

        Raises:
            NotFound: no such object.
            StorageError: the bucket is missing or the request failed; reads of the stream
                raise StorageError too.
        """
        from botocore.exceptions import ClientError

        object_key = self.object_key(key)
        with self.errors(f"download of {self.uri(object_key)}"):
            try:
                response = self.client.get_object(Bucket=self.bucket, Key=object_key)
            except ClientError as exc:
                if error_code(exc) in MISSING_KEY_CODES:
                    raise NotFound(f"stored object {key!r} is missing from {self.url}") from exc
                raise
        raw = S3Reader(response["Body"], self, self.uri(object_key))
        return io.BufferedReader(raw, self.READ_BUFFER_SIZE)

    def stat(self, key: str) -> ObjectInfo | None:
        """The object's size (bytes), last modification (UTC) and Object Lock state
        (``ObjectLockRetainUntilDate``, ``ObjectLockLegalHoldStatus``), or None if missing.

        Raises:
            StorageError: the request failed (a missing bucket included).
        """
        from botocore.exceptions import ClientError

        object_key = self.object_key(key)
        with self.errors(f"stat of {self.uri(object_key)}"):
            try:
                head = self.client.head_object(Bucket=self.bucket, Key=object_key)
            except ClientError as exc:
                if error_code(exc) in MISSING_KEY_CODES:
                    return None
                raise
        until = head.get("ObjectLockRetainUntilDate")
        return ObjectInfo(
            key,
            int(head["ContentLength"]),
            _utc(head["LastModified"]),
            retain_until=_utc(until) if isinstance(until, datetime) else None,
            legal_hold=head.get("ObjectLockLegalHoldStatus") == "ON",
        )

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Committed objects whose key starts with ``prefix``, keys relative to the target,
        sorted; "folder" marker objects (keys ending in ``/``) are skipped.

        Raises:
            StorageError: the listing failed (a missing bucket included).
        """
        if prefix.strip("/"):
            validate_key(prefix.strip("/"))
        full = self.prefix + prefix
        found = []
        with self.errors(f"listing of {self.uri(full)}"):
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket,
                Prefix=full,
                PaginationConfig={"PageSize": self.LIST_PAGE_SIZE},
            )
            for page in pages:
                for item in page.get("Contents", []):
                    key = str(item["Key"])[len(self.prefix) :]
                    if key and not key.endswith("/"):
                        found.append(ObjectInfo(key, int(item["Size"]), _utc(item["LastModified"])))
        yield from sorted(found, key=lambda info: info.key)

    def delete(self, key: str) -> None:
        """Delete the object; a missing one is fine. On an Object Lock target (a versioned
        bucket, where a plain delete only adds a delete marker and leaves the bytes) every
        version of the key is deleted.

        Raises:
            StorageError: the request failed (for a version still locked: refused).
        """
        object_key = self.object_key(key)
        with self.errors(f"delete of {self.uri(object_key)}"):
            if not self.locked:
                self.client.delete_object(Bucket=self.bucket, Key=object_key)
                return
            pages = self.client.get_paginator("list_object_versions").paginate(
                Bucket=self.bucket, Prefix=object_key
            )
            for page in pages:
                for item in page.get("Versions", []) + page.get("DeleteMarkers", []):
                    if item["Key"] == object_key:
                        self.client.delete_object(
                            Bucket=self.bucket, Key=object_key, VersionId=item["VersionId"]
                        )

    def discard_partial(self, key: str) -> None:
        """Abort every unfinished multipart upload of ``key`` (left by a crashed writer).

        Raises:
            StorageError: the uploads cannot be listed or aborted.
        """
        object_key = self.object_key(key)
        with self.errors(f"listing of unfinished uploads of {self.uri(object_key)}"):
            pages = self.client.get_paginator("list_multipart_uploads").paginate(
                Bucket=self.bucket, Prefix=object_key
            )
            upload_ids = [
                str(upload["UploadId"])
                for page in pages
                for upload in page.get("Uploads", [])
                if upload["Key"] == object_key
            ]
        for upload_id in upload_ids:
            self.abort_upload(object_key, upload_id)
        if upload_ids:
            log.info("aborted %d unfinished upload(s) of %s", len(upload_ids), self.uri(object_key))

    def abort_upload(self, object_key: str, upload_id: str) -> None:
        """Abort one multipart upload; one already gone is fine.

        Raises:
            StorageError: the request failed.
        """
        from botocore.exceptions import ClientError

        with self.errors(f"abort of the upload of {self.uri(object_key)}"):
            try:
                self.client.abort_multipart_upload(
                    Bucket=self.bucket, Key=object_key, UploadId=upload_id
                )
            except ClientError as exc:
                if error_code(exc) not in ("NoSuchUpload", "404"):
                    raise

    def discard_partials(self, prefix: str, before: datetime) -> int:
        """Abort the unfinished multipart uploads under ``prefix`` started before ``before``.

        Raises:
            StorageError: the uploads cannot be listed or aborted.
        """
        full = self.prefix + prefix
        with self.errors(f"listing of unfinished uploads under {self.uri(full)}"):
            pages = self.client.get_paginator("list_multipart_uploads").paginate(
                Bucket=self.bucket, Prefix=full
            )
            stale = [
                (str(upload["Key"]), str(upload["UploadId"]))
                for page in pages
                for upload in page.get("Uploads", [])
                if _utc(upload["Initiated"]) < before
            ]
        for object_key, upload_id in stale:
            self.abort_upload(object_key, upload_id)
        return len(stale)

    def get_object(self, object_key: str, **args: Any) -> tuple[IO[bytes], dict[str, Any]]:
        """``GetObject`` of the S3 key ``object_key`` taken as is (no prefix, no key check:
        file snapshots read an application's own keys): an unbuffered stream and the response
        fields (``ContentLength``, ``ETag``, ``LastModified``, ``ContentType``, ``Metadata``,
        ``VersionId``, ...). ``args`` are passed on (``VersionId``, ``IfMatch``).

        Raises:
            NotFound: no such key (or version).
            StorageError: the request failed (``PreconditionFailed`` for a failed
                ``IfMatch`` included); reads of the stream raise StorageError too.
        """
        from botocore.exceptions import ClientError

        with self.errors(f"download of {self.uri(object_key)}"):
            try:
                response = self.client.get_object(Bucket=self.bucket, Key=object_key, **args)
            except ClientError as exc:
                if error_code(exc) in MISSING_KEY_CODES | {"NoSuchVersion"}:
                    raise NotFound(f"{self.uri(object_key)} does not exist (any more)") from exc
                raise
        # Unbuffered: callers read whole small objects or large chunks, and a buffer per
        # object would cost its size in allocations for nothing.
        raw = S3Reader(response.pop("Body"), self, self.uri(object_key))
        return cast(IO[bytes], raw), response

    def open_object_write(self, object_key: str, extra_args: dict[str, Any]) -> ObjectWriter:
        """A streaming upload to the S3 key ``object_key`` taken as is (no prefix, no key
        check), with ``extra_args`` added to ``PutObject``/``CreateMultipartUpload``
        (``ContentType``, ``Metadata``, ``CacheControl``, ...): restoring an application's
        own objects. Same all-or-nothing semantics as :meth:`open_write`."""
        return MultipartWriter(self, object_key, object_key, extra_args)

    def check_writable(self) -> None:
        """Prove the bucket exists and accepts writes and deletes under the prefix (see
        :func:`pgvault.storage.s3_errors.check_writable`).

        Raises:
            StorageError: one line, e.g. ``S3 bucket 'x' does not exist or is not accessible
                with the configured credentials``.
        """
        check_writable(self)
