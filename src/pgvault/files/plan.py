"""Pure decisions of snapshots and restores (no I/O): merging a listing with a manifest,
what counts as unchanged, and what a restore would add, change, keep and delete.

Both sides of every merge are in key order (plain ``str`` order, which is S3's UTF-8 byte
order), so one pass with O(1) memory pairs them up.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Literal, Protocol, TypeVar

from pgvault.files.manifest import Entry
from pgvault.files.sources import Attributes, Listed


class Keyed(Protocol):
    """Anything with a key (:class:`Listed`, :class:`Entry`)."""

    @property
    def key(self) -> str: ...


A = TypeVar("A", bound=Keyed)
B = TypeVar("B", bound=Keyed)

FIRST_KEYS = 10
"""Keys shown per action in a restore plan."""


def merge(left: Iterable[A], right: Iterable[B]) -> Iterator[tuple[A | None, B | None]]:
    """Pair two key-ordered sequences by key: ``(a, b)`` for a key on both sides,
    ``(a, None)`` / ``(None, b)`` for one side only.

    Raises:
        ValueError: a side is not in strictly increasing key order (it would pair wrongly).
    """
    a_iter, b_iter = iter(left), iter(right)
    a, b = next(a_iter, None), next(b_iter, None)
    last_a = last_b = None
    while a is not None or b is not None:
        if a is not None and last_a is not None and a.key <= last_a:
            raise ValueError(f"listing out of key order at {a.key!r}")
        if b is not None and last_b is not None and b.key <= last_b:
            raise ValueError(f"manifest out of key order at {b.key!r}")
        if b is None or (a is not None and a.key < b.key):
            assert a is not None
            yield a, None
            last_a, a = a.key, next(a_iter, None)
        elif a is None or b.key < a.key:
            yield None, b
            last_b, b = b.key, next(b_iter, None)
        else:
            yield a, b
            last_a, a = a.key, next(a_iter, None)
            last_b, b = b.key, next(b_iter, None)


def unchanged(item: Listed, previous: Entry, pool: str) -> bool:
    """Whether ``item`` can reuse ``previous``'s content without reading it.

    S3: same size, ETag and last-modified (and version, when both have one); a directory:
    same size and mtime in nanoseconds. Never when the previous blob lies in another pool
    (the recipients changed: the content is stored again for the new ones).
    """
    if not previous.blob.startswith(pool) or item.size != previous.size:
        return False
    if item.mtime_ns is not None:
        return item.mtime_ns == previous.mtime_ns
    if item.version_id and previous.version_id and item.version_id != previous.version_id:
        return False
    return item.etag == previous.etag and item.modified == previous.modified


def reuse(item: Listed, previous: Entry) -> Entry:
    """``previous`` carried into a new snapshot with what the listing says now (version,
    mode)."""
    return Entry(
        key=previous.key,
        size=previous.size,
        sha256=previous.sha256,
        blob=previous.blob,
        modified=item.modified,
        stored_size=previous.stored_size,
        stored_sha256=previous.stored_sha256,
        content_type=previous.content_type,
        metadata=previous.metadata,
        headers=previous.headers,
        etag=item.etag,
        version_id=item.version_id,
        mode=item.mode if item.mode is not None else previous.mode,
        mtime_ns=item.mtime_ns,
    )


Action = Literal["add", "check", "extra"]


def restore_actions(
    entries: Iterable[Entry], current: Iterable[Listed]
) -> Iterator[tuple[Action, Entry | None, Listed | None]]:
    """What a restore must look at, key by key: ``add`` (in the snapshot only), ``check``
    (on both sides: same content unless :func:`same_content` says otherwise), ``extra``
    (at the destination only)."""
    for entry, listed in merge(entries, current):
        if listed is None:
            yield "add", entry, None
        elif entry is None:
            yield "extra", None, listed
        else:
            yield "check", entry, listed


def same_content(entry: Entry, listed: Listed) -> bool | None:
    """From the destination's listing alone: False when the object surely differs from
    the entry, None when its attributes must tell (a file's mtime and mode, an S3 object's
    content type, metadata and headers once size and ETag match).
    """
    if listed.size != entry.size:
        return False
    if listed.mtime_ns is not None or listed.etag is None:
        return None
    if listed.etag == entry.etag:
        return None
    return False


def same_attributes(entry: Entry, found: Attributes, directory: bool) -> bool:
    """Whether the destination's attributes are the entry's: mode and mtime for a
    directory; content type, user metadata and headers for S3."""
    if directory:
        return (entry.mode is None or found.mode == entry.mode) and (
            entry.mtime_ns is None or found.mtime_ns == entry.mtime_ns
        )
    return (
        (found.content_type or None) == (entry.content_type or None)
        and found.metadata == entry.metadata
        and found.headers == entry.headers
    )


@dataclass
class RestoreCounts:
    """What a restore does (``--dry-run`` prints this). Sizes in bytes; ``first_*`` are the
    first :data:`FIRST_KEYS` keys of each action, in key order."""

    snapshot_id: str
    destination: str
    objects: int = 0
    to_add: int = 0
    to_change: int = 0
    unchanged: int = 0
    to_delete: int = 0
    extra_kept: int = 0
    add_bytes: int = 0
    change_bytes: int = 0
    first_add: list[str] = field(default_factory=list)
    first_change: list[str] = field(default_factory=list)
    first_delete: list[str] = field(default_factory=list)
    safety_snapshot: bool = False

    def count(self, action: str, key: str, size: int = 0) -> None:
        """Count one decided key (``add``, ``change``, ``unchanged``, ``delete``, ``kept``)."""
        if action == "add":
            self.to_add += 1
            self.add_bytes += size
            _first(self.first_add, key)
        elif action == "change":
            self.to_change += 1
            self.change_bytes += size
            _first(self.first_change, key)
        elif action == "unchanged":
            self.unchanged += 1
        elif action == "delete":
            self.to_delete += 1
            _first(self.first_delete, key)
        else:
            self.extra_kept += 1
        if action in ("add", "change", "unchanged"):
            self.objects += 1


def _first(keys: list[str], key: str) -> None:
    if len(keys) < FIRST_KEYS:
        keys.append(key)
