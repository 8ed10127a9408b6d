"""Pure parts of file snapshots: exclude globs, stored forms, blob names, manifest lines,
the key-ordered merge, "unchanged" and restore decisions, retention over snapshot rows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pgvault.catalog.files import FileSnapshotRecord
from pgvault.config.operations import RetentionSettings
from pgvault.errors import ArchiveError, ConfigError, StorageError
from pgvault.files.blobs import blob_key, choose_form, parse_blob_key, pool_prefix
from pgvault.files.manifest import Entry
from pgvault.files.plan import RestoreCounts, merge, restore_actions, same_content, unchanged
from pgvault.files.sources import Listed, compile_excludes, safe_relative
from pgvault.operations import retention

T0 = datetime(2026, 11, 21, 5, 30, tzinfo=UTC)
SHA = "ab" * 32


def entry(key: str, **kw: object) -> Entry:
    values: dict[str, object] = {
        "key": key,
        "size": 10,
        "sha256": SHA,
        "blob": blob_key("files/s/blobs/", SHA, "zstd", False),
        "modified": T0,
        "etag": "e1",
    }
    values.update(kw)
    return Entry(**values)  # type: ignore[arg-type]


def test_excludes_match_segments_and_trees() -> None:
    excluded = compile_excludes(["*.tmp", "cache/**", "a/?.log"])
    assert excluded("x.tmp") and excluded("deep/dir/x.tmp")
    assert excluded("cache/a") and excluded("cache/a/b/c.png")
    assert excluded("a/1.log") and not excluded("a/12.log") and not excluded("b/a/1.log")
    assert not excluded("x.tmp.png") and not excluded("cached/a") and not excluded("cache")
    with pytest.raises(ConfigError):
        compile_excludes([" "])


@pytest.mark.parametrize(
    ("head", "form"),
    [
        (b"\x89PNG\r\n\x1a\n....", "none"),
        (b"\xff\xd8\xff\xe0JFIF", "none"),
        (b"RIFF\x00\x00\x00\x00WEBPVP8 ", "none"),
        (b"\x00\x00\x00\x18ftypmp42", "none"),
        (b"PK\x03\x04\x14\x00", "none"),
        (b"\x1f\x8b\x08\x00", "none"),
        (b"RIFF\x00\x00\x00\x00WAVEfmt ", "zstd"),
        (b"<svg xmlns=", "zstd"),
        (b'{"a": 1}', "zstd"),
        (b"", "none"),
    ],
)
def test_stored_form_comes_from_the_content(head: bytes, form: str) -> None:
    assert choose_form(head) == form


def test_blob_keys_round_trip_and_pools_follow_recipients() -> None:
    plain = pool_prefix("images", [])
    sealed = pool_prefix("images", ["age1b", " age1a"])
    assert plain == "files/images/blobs/"
    assert sealed.startswith("files/images/blobs-age-") and sealed == pool_prefix(
        "images", ["age1a", "age1b"]
    )
    key = blob_key(sealed, SHA, "zstd", True)
    assert key.endswith(f"/ab/{SHA}.zst.age")
    assert parse_blob_key(key) == (SHA, "zstd", True)
    assert parse_blob_key(blob_key(plain, SHA, "none", False)) == (SHA, "none", False)
    with pytest.raises(ArchiveError):
        parse_blob_key("files/images/blobs/ab/not-a-sha")


def test_manifest_lines_round_trip_any_key() -> None:
    original = entry(
        "users/42/ä b\udcff.png",
        metadata={"owner": "Zoë"},
        headers={"CacheControl": "max-age=60"},
        content_type="image/png",
        version_id="v1",
        mode=0o640,
        mtime_ns=123456789,
    )
    assert Entry.from_json(original.to_json()) == original
    with pytest.raises(ArchiveError):
        Entry.from_json('{"key": "x"}')


def test_safe_relative_refuses_escapes() -> None:
    assert safe_relative("a/b c/d.png") == "a/b c/d.png"
    for bad in ("", "/etc/passwd", "a/../b", "./a", "a//b", "a/\x00"):
        with pytest.raises(StorageError):
            safe_relative(bad)


keys = st.lists(st.text(min_size=1, max_size=6), unique=True).map(sorted)


@given(keys, keys)
def test_merge_pairs_every_key_once(left: list[str], right: list[str]) -> None:
    listed = [Listed(k, 1, T0) for k in left]
    entries = [entry(k) for k in right]
    pairs = list(merge(listed, entries))
    seen = [(a.key if a else None, b.key if b else None) for a, b in pairs]
    assert [k for k, _ in seen if k is not None] == left
    assert [k for _, k in seen if k is not None] == right
    assert all(a == b for a, b in seen if a is not None and b is not None)
    assert sorted({k for pair in seen for k in pair if k}) == sorted(set(left) | set(right))


def test_merge_refuses_unordered_input() -> None:
    with pytest.raises(ValueError, match="order"):
        list(merge([Listed("b", 1, T0), Listed("a", 1, T0)], []))


def test_unchanged_needs_size_etag_and_time_or_mtime() -> None:
    pool = "files/s/blobs/"
    previous = entry("k")
    assert unchanged(Listed("k", 10, T0, "e1"), previous, pool)
    assert not unchanged(Listed("k", 11, T0, "e1"), previous, pool)
    assert not unchanged(Listed("k", 10, T0, "e2"), previous, pool)
    assert not unchanged(Listed("k", 10, T0 + timedelta(seconds=1), "e1"), previous, pool)
    assert not unchanged(Listed("k", 10, T0, "e1"), previous, "files/s/blobs-age-x/")
    local = entry("k", etag=None, mtime_ns=5)
    assert unchanged(Listed("k", 10, T0, mtime_ns=5, mode=0o600), local, pool)
    assert not unchanged(Listed("k", 10, T0, mtime_ns=6), local, pool)


def test_restore_actions_and_quick_content_checks() -> None:
    entries = [entry("a"), entry("b"), entry("c", size=3)]
    current = [Listed("b", 10, T0, "e1"), Listed("c", 4, T0, "zz"), Listed("d", 1, T0, "x")]
    actions = [
        (a, e.key if e else None, c.key if c else None)
        for a, e, c in restore_actions(entries, current)
    ]
    assert actions == [
        ("add", "a", None),
        ("check", "b", "b"),
        ("check", "c", "c"),
        ("extra", None, "d"),
    ]
    assert same_content(entries[1], current[0]) is None  # same ETag: look closer
    assert same_content(entries[2], current[1]) is False  # size differs
    assert same_content(entry("x"), Listed("x", 10, T0, "other")) is False


def test_restore_counts_keep_the_first_keys() -> None:
    counts = RestoreCounts("s", "d")
    for i in range(15):
        counts.count("add", f"k{i:02d}", 2)
    counts.count("delete", "z")
    counts.count("kept", "y")
    assert counts.to_add == 15 and counts.add_bytes == 30 and len(counts.first_add) == 10
    assert counts.first_delete == ["z"] and counts.extra_kept == 1 and counts.objects == 15


def _snapshot(i: int, **kw: object) -> FileSnapshotRecord:
    values: dict[str, object] = {
        "id": f"fs-{i}",
        "file_set": "images",
        "source": "s3://b/p",
        "storage": "local",
        "manifest_key": "m",
        "index_key": "i",
        "status": "completed",
        "started_at": T0 + timedelta(days=i),
    }
    values.update(kw)
    return FileSnapshotRecord(**values)  # type: ignore[arg-type]


def test_retention_policies_apply_to_snapshot_rows() -> None:
    rows = [_snapshot(i) for i in range(5)] + [_snapshot(9, trigger="pre-restore")]
    now = T0 + timedelta(days=10)
    decided = {
        d.backup_id: d
        for d in retention.decide_database(rows, RetentionSettings(keep_last=2), {}, now)
    }
    assert [k for k, d in decided.items() if d.keep] == ["fs-9", "fs-4", "fs-3"]
    assert "pre-restore safety backup" in decided["fs-9"].reasons
    assert not decided["fs-0"].keep
