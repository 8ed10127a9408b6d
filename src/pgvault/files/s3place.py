"""An application's files in an S3 bucket under a prefix (``s3://bucket/prefix``).

The client, credentials chain, retries and error translation are
:class:`pgvault.storage.s3.S3Storage`'s (built from the file set's S3 options); this module
only adds what a file set needs: listings with ETags, versioned listings as of a moment,
reads of a given version, and writes carrying content type and user metadata.

Versioned listing (``ListObjectVersions``): each key's newest version or delete marker
with ``LastModified <= as_of``; a delete marker there means the key did not exist then.
S3 timestamps have a resolution of one second, so "as of" is exact to that second.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from pgvault.config.files import FileSetSettings
from pgvault.config.settings import StorageTargetSettings
from pgvault.errors import StorageError
from pgvault.files.sources import Attributes, Changed, Listed, Opened, Place
from pgvault.storage.base import ObjectWriter
from pgvault.storage.s3 import MiB, S3Storage

log = logging.getLogger(__name__)

HEADERS = ("CacheControl", "ContentDisposition", "ContentEncoding", "ContentLanguage")
"""Standard headers kept with each object besides ``ContentType`` (boto3's names)."""


def _utc(value: datetime) -> datetime:
    return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)


def _etag(value: Any) -> str | None:
    return str(value).strip('"') if value else None


def _code(exc: BaseException) -> str:
    response = getattr(exc.__cause__, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


class S3Place(Place):
    """Files under ``s3://bucket/prefix``; keys are relative to the prefix.

    Args:
        url: ``s3://bucket/prefix``.
        options: the file set's settings (region, endpoint_url, path_style, profile).

    Raises:
        ConfigError: no valid bucket, or boto3 missing.
    """

    PART_SIZE = 8 * MiB
    """Bytes per multipart part when writing objects back (memory per upload)."""

    def __init__(self, url: str, options: FileSetSettings | None = None) -> None:
        super().__init__(url)
        target = StorageTargetSettings(
            url=url,
            region=options.region if options else None,
            endpoint_url=options.endpoint_url if options else None,
            path_style=options.path_style if options else False,
            profile=options.profile if options else None,
        )
        self.store = S3Storage(target, url, part_size=self.PART_SIZE)
        self.bucket, self.prefix = self.store.bucket, self.store.prefix
        self._versioned: bool | None = None

    @property
    def part_size(self) -> int:
        """Bytes one writer buffers at most."""
        return self.store.part_size

    def versioned(self) -> bool:
        """True when the bucket's versioning is ``Enabled`` (``Suspended`` or never enabled:
        False; no permission to ask: False, logged).

        Raises:
            StorageError: the bucket is missing or the request failed otherwise.
        """
        if self._versioned is None:
            try:
                with self.store.errors(f"versioning check of bucket {self.bucket!r}"):
                    answer = self.store.client.get_bucket_versioning(Bucket=self.bucket)
                self._versioned = answer.get("Status") == "Enabled"
            except StorageError as exc:
                if _code(exc) not in ("AccessDenied", "403"):
                    raise
                log.warning("cannot read the versioning of %s: treated as unversioned", self.url)
                self._versioned = False
        return self._versioned

    def list(self, as_of: datetime | None = None) -> Iterator[Listed]:
        if as_of is not None and self.versioned():
            yield from self._versions(_utc(as_of))
            return
        with self.store.errors(f"listing of {self.store.uri(self.prefix)}"):
            pages = self.store.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=self.prefix
            )
            for page in pages:
                for item in page.get("Contents", []):
                    key = str(item["Key"])[len(self.prefix) :]
                    if key and not key.endswith("/"):
                        yield Listed(
                            key, int(item["Size"]), _utc(item["LastModified"]), _etag(item["ETag"])
                        )

    def _versions(self, as_of: datetime) -> Iterator[Listed]:
        current: str | None = None
        decided = False
        with self.store.errors(f"version listing of {self.store.uri(self.prefix)}"):
            pages = self.store.client.get_paginator("list_object_versions").paginate(
                Bucket=self.bucket, Prefix=self.prefix
            )
            for page in pages:
                rows = [(v, False) for v in page.get("Versions", [])]
                rows += [(d, True) for d in page.get("DeleteMarkers", [])]
                # Versions and delete markers come in two lists, each by key then newest
                # first: merge them back (ties within a second: the latest one first).
                rows.sort(
                    key=lambda r: (
                        str(r[0]["Key"]),
                        -_utc(r[0]["LastModified"]).timestamp(),
                        not r[0].get("IsLatest", False),
                    )
                )
                for raw, is_marker in rows:
                    key = str(raw["Key"])[len(self.prefix) :]
                    if key != current:
                        current, decided = key, False
                    if decided or _utc(raw["LastModified"]) > as_of:
                        continue
                    decided = True
                    if is_marker or not key or key.endswith("/"):
                        continue
                    yield Listed(
                        key,
                        int(raw["Size"]),
                        _utc(raw["LastModified"]),
                        _etag(raw.get("ETag")),
                        version_id=str(raw["VersionId"]),
                    )

    def open(self, item: Listed, *, if_match: bool = False) -> Opened:
        args: dict[str, Any] = {}
        if item.version_id is not None:
            args["VersionId"] = item.version_id
        elif if_match and item.etag:
            args["IfMatch"] = f'"{item.etag}"'
        try:
            stream, response = self.store.get_object(self.prefix + item.key, **args)
        except StorageError as exc:
            if _code(exc) in ("PreconditionFailed", "412"):
                raise Changed(f"{self.store.uri(self.prefix + item.key)} changed") from exc
            raise
        return Opened(
            stream=stream,
            size=int(response["ContentLength"]),
            modified=_utc(response["LastModified"]),
            etag=_etag(response.get("ETag")),
            version_id=item.version_id,
            content_type=response.get("ContentType"),
            metadata={str(k): str(v) for k, v in (response.get("Metadata") or {}).items()},
            headers={h: str(response[h]) for h in HEADERS if response.get(h)},
        )

    def head(self, key: str) -> Attributes | None:
        from botocore.exceptions import ClientError

        object_key = self.prefix + key
        with self.store.errors(f"stat of {self.store.uri(object_key)}"):
            try:
                response = self.store.client.head_object(Bucket=self.bucket, Key=object_key)
            except ClientError as exc:
                if str(exc.response.get("Error", {}).get("Code")) in ("404", "NoSuchKey"):
                    return None
                raise
        return Attributes(
            content_type=response.get("ContentType"),
            metadata={str(k): str(v) for k, v in (response.get("Metadata") or {}).items()},
            headers={h: str(response[h]) for h in HEADERS if response.get(h)},
        )

    def open_write(self, key: str, attributes: Attributes) -> ObjectWriter:
        extra: dict[str, Any] = dict(attributes.headers)
        if attributes.content_type:
            extra["ContentType"] = attributes.content_type
        if attributes.metadata:
            extra["Metadata"] = dict(attributes.metadata)
        return self.store.open_object_write(self.prefix + key, extra)

    def delete(self, key: str) -> None:
        object_key = self.prefix + key
        with self.store.errors(f"delete of {self.store.uri(object_key)}"):
            self.store.client.delete_object(Bucket=self.bucket, Key=object_key)

    def check_readable(self) -> None:
        from botocore.exceptions import ClientError

        with self.store.errors(f"access check of bucket {self.bucket!r}"):
            try:
                self.store.client.head_bucket(Bucket=self.bucket)
            except ClientError as exc:
                raise StorageError(
                    f"S3 bucket {self.bucket!r} of file source {self.url} does not exist or is "
                    "not accessible with the configured credentials"
                ) from exc
