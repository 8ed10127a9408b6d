"""Choosing the backend of a file set's source or destination from its URL."""

from __future__ import annotations

from urllib.parse import urlparse

from pgvault.config.files import FileSetSettings
from pgvault.errors import ConfigError
from pgvault.files.s3place import S3Place
from pgvault.files.sources import DirectoryPlace, Place


def open_place(url: str, options: FileSetSettings | None = None) -> Place:
    """The place at ``url`` (``s3://bucket/prefix``, ``file:///dir`` or a path), with the
    S3 options (region, endpoint, path style, profile) of ``options``.

    Raises:
        ConfigError: an unknown scheme or an invalid S3 URL; boto3 missing for S3.
    """
    scheme = urlparse(url).scheme
    if scheme in ("", "file"):
        return DirectoryPlace(url)
    if scheme == "s3":
        return S3Place(url, options)
    raise ConfigError(f"unknown file source {url!r}: use s3://bucket/prefix or a directory")
