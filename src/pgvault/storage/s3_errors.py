"""S3 errors as one line, and the access check of a bucket.

Every botocore/boto3 error becomes a :class:`StorageError` (or is recognised as a missing
key or bucket) at this boundary; messages name the bucket and key, never a credential, a
signature or an upload id."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from pgvault.errors import StorageError

MISSING_KEY_CODES = frozenset({"404", "NoSuchKey", "NotFound"})
MISSING_BUCKET_CODES = frozenset({"NoSuchBucket"})
DENIED_CODES = frozenset(
    {"403", "AccessDenied", "Forbidden", "InvalidAccessKeyId", "SignatureDoesNotMatch"}
)
_URL_QUERY = re.compile(r"(\w+://)(?:[^/\s\"'@]*@)?([^\s\"'?]*)\?[^\s\"']*")
_URL_USERINFO = re.compile(r"(\w+://)[^/\s\"'@]*@")
_BOTO_HINTS = {
    "NoCredentialsError": "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or a profile",
    "PartialCredentialsError": "set both AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
    "EndpointConnectionError": "check the endpoint URL and the network",
    "ConnectTimeoutError": "check the endpoint URL and the network",
    "ReadTimeoutError": "the endpoint stopped answering; try again",
    "ConnectionClosedError": "the endpoint closed the connection; try again",
    "ProfileNotFound": "check the profile name and ~/.aws/config",
}


def one_line(text: str) -> str:
    """``text`` on one line, URLs without their query strings and user info (signatures,
    upload ids and any password in an endpoint URL stay out of messages)."""
    text = _URL_QUERY.sub(r"\1\2", text)
    text = _URL_USERINFO.sub(r"\1", text)
    return " ".join(text.split())


def error_code(exc: Exception) -> str:
    """The S3 error code of a botocore ``ClientError`` (``"NoSuchKey"``, ``"404"``, ...)."""
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


def missing_bucket(bucket: str) -> StorageError:
    return StorageError(
        f"S3 bucket {bucket!r} does not exist or is not accessible with the configured credentials"
    )


def translate(exc: Exception, action: str, bucket: str) -> StorageError:
    """One-line :class:`StorageError` for a botocore error raised while doing ``action``."""
    from botocore.exceptions import ClientError

    if isinstance(exc, ClientError):
        code = error_code(exc)
        if code in MISSING_BUCKET_CODES:
            return missing_bucket(bucket)
        message = one_line(str(exc.response.get("Error", {}).get("Message") or ""))
        detail = f"{code}: {message}" if message and message != code else code
        if code in DENIED_CODES:
            return StorageError(
                f"S3 {action} was refused ({detail}): check the credentials and their "
                f"permissions on bucket {bucket!r}"
            )
        return StorageError(f"S3 {action} failed ({detail})")
    name = type(exc).__name__
    hint = _BOTO_HINTS.get(name)
    detail = one_line(str(exc)) or name
    return StorageError(f"S3 {action} failed: {detail}" + (f" ({hint})" if hint else ""))


@contextmanager
def boto_errors(action: str, bucket: str) -> Iterator[None]:
    """Turn botocore errors (and low-level I/O errors under them) into :class:`StorageError`.

    ``action`` reads like ``"upload of s3://bucket/key"``; :class:`pgvault.errors.PgvaultError`
    raised inside passes through unchanged.
    """
    from botocore.exceptions import BotoCoreError, ClientError
    from urllib3.exceptions import HTTPError as Urllib3Error

    try:
        yield
    except (BotoCoreError, ClientError, Urllib3Error) as exc:
        raise translate(exc, action, bucket) from exc
    except OSError as exc:
        raise StorageError(f"S3 {action} failed: {one_line(str(exc))}") from exc


PROBE_NAME = ".pgvault-write-check"
"""The probe object's name under a target's prefix (see :func:`check_writable`)."""


def check_writable(store: Any) -> None:
    """Prove ``store``'s (an :class:`~pgvault.storage.s3.S3Storage`) bucket exists and
    accepts writes and deletes under its prefix: a ``HeadBucket``, then a small probe object
    put (with the target's encryption and storage class) and deleted.

    The probe's key is the same for every process (:data:`PROBE_NAME`), so a probe left by
    a process killed between its put and its delete is overwritten and deleted by the next
    check; two checks at once both succeed (a delete of a deleted key succeeds).

    Raises:
        StorageError: one line naming the bucket, or the permission that is missing.
    """
    from botocore.exceptions import ClientError

    with store.errors(f"access check of bucket {store.bucket!r}"):
        try:
            store.client.head_bucket(Bucket=store.bucket)
        except ClientError as exc:
            if error_code(exc) in MISSING_KEY_CODES | MISSING_BUCKET_CODES | DENIED_CODES:
                raise missing_bucket(store.bucket) from exc
            raise
    probe = store.object_key(PROBE_NAME)
    args = store.object_args
    _probe(store, "write", "s3:PutObject", store.client.put_object, Key=probe, Body=b"ok", **args)
    _probe(store, "delete", "s3:DeleteObject", store.client.delete_object, Key=probe)


def _probe(store: Any, verb: str, permission: str, call: Any, **kwargs: Any) -> None:
    """Run one request of :func:`check_writable`; a refusal names the missing permission."""
    from botocore.exceptions import ClientError

    where = store.uri(store.prefix)
    with store.errors(f"test {verb} under {where}"):
        try:
            call(Bucket=store.bucket, **kwargs)
        except ClientError as exc:
            code = error_code(exc)
            if code in DENIED_CODES:
                raise StorageError(
                    f"S3 bucket {store.bucket!r} does not allow {verb}s under {where} with "
                    f"the configured credentials ({code}): grant {permission} or choose "
                    "another storage target"
                ) from exc
            raise
