"""Helpers for file snapshot tests: buckets and directory trees to snapshot, and what a
bucket or a tree holds (key -> sha256 and attributes), read back for real."""

from __future__ import annotations

import hashlib
import os
import random
import stat
from pathlib import Path
from typing import Any

from support.s3server import MotoServer

PNG_HEAD = b"\x89PNG\r\n\x1a\n"


def write_config(home: Path, text: str) -> Path:
    """``home/pgvault.toml`` (read by the CLI, whose cwd is ``home``)."""
    home.mkdir(parents=True, exist_ok=True)
    path = home / "pgvault.toml"
    path.write_text(text, "utf-8")
    return path


def toml_str(value: str) -> str:
    """A TOML basic string."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def body(rng: random.Random, size: int, kind: str) -> bytes:
    """``size`` bytes: ``png`` (PNG magic then random bytes) or ``text`` (compressible)."""
    if kind == "png":
        return (PNG_HEAD + rng.randbytes(max(0, size - len(PNG_HEAD))))[:size]
    line = f"row {rng.random():.12f} lorem ipsum dolor sit amet\n".encode()
    return (line * (size // len(line) + 1))[:size]


def put(client: Any, bucket: str, key: str, data: bytes, **extra: Any) -> None:
    """One PutObject (single request; keys as given)."""
    client.put_object(Bucket=bucket, Key=key, Body=data, **extra)


def bucket_objects(
    client: Any, bucket: str, prefix: str = ""
) -> dict[str, tuple[str, str, dict[str, str]]]:
    """``{key relative to prefix: (sha256, content type, user metadata)}``, read whole."""
    found: dict[str, tuple[str, str, dict[str, str]]] = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            got = client.get_object(Bucket=bucket, Key=item["Key"])
            digest = hashlib.sha256(got["Body"].read()).hexdigest()
            found[item["Key"][len(prefix) :]] = (digest, got["ContentType"], got["Metadata"])
    return found


def bucket_keys(client: Any, bucket: str, prefix: str = "") -> list[str]:
    """Every key under ``prefix`` (full keys)."""
    keys: list[str] = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys += [item["Key"] for item in page.get("Contents", [])]
    return keys


def tree(root: Path) -> dict[str, tuple[str, int, int]]:
    """``{relative path: (sha256, mode bits, mtime_ns)}`` of every regular file."""
    found = {}
    for path in sorted(root.rglob("*")):
        st = path.lstat()
        if stat.S_ISREG(st.st_mode):
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            found[path.relative_to(root).as_posix()] = (
                digest,
                stat.S_IMODE(st.st_mode),
                st.st_mtime_ns,
            )
    return found


def make_tree(root: Path, files: int, size: int, seed: int = 7) -> None:
    """``files`` files of ``size`` random bytes under ``root`` (in a few subdirectories)."""
    rng = random.Random(seed)
    for i in range(files):
        path = root / f"d{i % 7}" / f"f{i:05d}.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(rng.randbytes(size))


def versioned_bucket(moto: MotoServer) -> str:
    """A new bucket with versioning enabled."""
    name = moto.create_bucket()
    client = moto.client()
    try:
        client.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    finally:
        client.close()
    return name


def set_mtime(path: Path, ns: int) -> None:
    """Set a file's access and modification time in nanoseconds."""
    os.utime(path, ns=(ns, ns))
