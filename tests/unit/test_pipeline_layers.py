"""Recognising what a stream holds by its bytes, and the compression/hashing writers."""

from __future__ import annotations

import gzip
import hashlib
import io
import tarfile
from collections.abc import Callable

import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from pgvault.dumps.layers import (
    AGE_MAGIC,
    HashingReader,
    HashingWriter,
    compressor,
    open_layers,
    sniff_dump,
    sniff_layer,
)
from pgvault.errors import ArchiveError, ConfigError

PLAIN = (
    b"--\n-- PostgreSQL database dump\n--\n\nSET statement_timeout = 0;\n"
    + b"COPY public.actor (actor_id, name) FROM stdin;\n1\tPENELOPE\n\\.\n" * 200
    + b"\n--\n-- PostgreSQL database dump complete\n--\n"
)
CUSTOM = b"PGDMP\x01\x10\x00\x04\x08\x08\x01" + bytes(range(256)) * 40


def _tar(members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def _zstd(data: bytes) -> bytes:
    return zstandard.ZstdCompressor().compress(data)


def test_sniff_layer() -> None:
    assert sniff_layer(_zstd(b"x")) == "zstd"
    assert sniff_layer(gzip.compress(b"x")) == "gzip"
    assert sniff_layer(AGE_MAGIC + b"\n-> X25519 abc") == "age"
    assert sniff_layer(PLAIN) is None
    assert sniff_layer(CUSTOM) is None
    assert sniff_layer(b"") is None


def test_sniff_dump() -> None:
    assert sniff_dump(CUSTOM) == "custom"
    assert sniff_dump(_tar({"toc.dat": b"PGDMP..."})) == "tar"
    assert sniff_dump(PLAIN) == "plain"
    assert sniff_dump(b"\xef\xbb\xbf\n\nSET client_encoding = 'UTF8';") == "plain"
    assert sniff_dump(b"CREATE TABLE t (i int);") == "plain"
    # a head cut inside a multi-byte character is still read as text
    assert sniff_dump("-- caf\u00e9 \u00e9".encode()[:-1]) == "plain"
    assert sniff_dump(b"hello world\n") is None
    assert sniff_dump(bytes(range(256))) is None
    assert sniff_dump(b"") is None


@pytest.mark.parametrize(
    ("wrap", "layers"),
    [
        (lambda d: d, []),
        (_zstd, ["zstd"]),
        (gzip.compress, ["gzip"]),
        (lambda d: gzip.compress(_zstd(d)), ["gzip", "zstd"]),
        (lambda d: _zstd(_zstd(d)), ["zstd", "zstd"]),
    ],
)
@pytest.mark.parametrize(("dump", "kind"), [(PLAIN, "plain"), (CUSTOM, "custom")])
def test_open_layers_unwraps_to_the_dump(
    wrap: Callable[[bytes], bytes], layers: list[str], dump: bytes, kind: str
) -> None:
    opened = open_layers(io.BytesIO(wrap(dump)))

    assert (opened.kind, opened.layers) == (kind, layers)
    with opened.stream as stream:
        assert stream.read() == dump


def test_open_layers_finds_a_tar_inside_zstd() -> None:
    tar = _tar({"toc.dat": b"PGDMP", "3456.dat.gz": gzip.compress(b"rows")})

    opened = open_layers(io.BytesIO(_zstd(tar)))

    assert (opened.kind, opened.layers) == ("tar", ["zstd"])
    with tarfile.open(fileobj=opened.stream, mode="r|") as members:
        assert [m.name for m in members] == ["toc.dat", "3456.dat.gz"]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty file"),
        (b"just some notes\n", "not a PostgreSQL dump"),
        (bytes(range(256)) * 8, "not a PostgreSQL dump"),
        (_zstd(b"\x00garbage inside zstd"), "not a PostgreSQL dump"),
        (gzip.compress(b"hello"), "not a PostgreSQL dump"),
        (AGE_MAGIC + b"\n-> X25519 abc\n", "age-encrypted"),
        (
            gzip.compress(gzip.compress(gzip.compress(gzip.compress(gzip.compress(PLAIN))))),
            "too many",
        ),
    ],
)
def test_open_layers_refuses_what_is_not_a_dump(data: bytes, message: str) -> None:
    with pytest.raises(ArchiveError, match=message):
        open_layers(io.BytesIO(data))


def _damaged(blob: bytes, how: str) -> bytes:
    if how == "truncated":
        return blob[: len(blob) * 2 // 3]
    data = bytearray(blob)
    middle = len(data) // 2
    data[middle : middle + 64] = b"\xff" * 64
    return bytes(data)


BIG_PLAIN = PLAIN + b"".join(
    b"-- %d %s\n" % (i, hashlib.sha256(b"%d" % i).hexdigest().encode()) for i in range(3000)
)


def _read_all(blob: bytes) -> bytes:
    with open_layers(io.BytesIO(blob)).stream as stream:
        return stream.read()


@pytest.mark.parametrize("how", ["truncated", "corrupted"])
def test_damaged_gzip_fails_with_an_archive_error(how: str) -> None:
    with pytest.raises(ArchiveError, match="gzip data is corrupt or cut short"):
        _read_all(_damaged(gzip.compress(BIG_PLAIN), how))


def test_corrupted_zstd_fails_with_an_archive_error() -> None:
    with pytest.raises(ArchiveError, match="zstd data is corrupt or cut short"):
        _read_all(_damaged(_zstd(BIG_PLAIN), "corrupted"))


@given(data=st.binary(max_size=50_000), method=st.sampled_from(["zstd", "gzip", "none"]))
@settings(max_examples=40)
def test_compressor_output_is_what_the_standard_tools_read(data: bytes, method: str) -> None:
    out = io.BytesIO()
    hashing = HashingWriter(out)
    stage = compressor(method, None, hashing)
    for start in range(0, len(data), 7_000):
        stage.write(data[start : start + 7_000])
    stage.close()

    stored = out.getvalue()
    assert hashing.size == len(stored)
    assert hashing.sha256 == hashlib.sha256(stored).hexdigest()
    if method == "zstd":
        assert zstandard.ZstdDecompressor().stream_reader(io.BytesIO(stored)).read() == data
    elif method == "gzip":
        assert gzip.decompress(stored) == data
    else:
        assert stored == data


def test_unknown_compression_is_refused() -> None:
    with pytest.raises(ConfigError, match="unknown compression 'lzma'"):
        compressor("lzma", None, io.BytesIO())


def test_hashing_reader_counts_what_passes_and_drains_the_rest() -> None:
    data = bytes(range(256)) * 5000
    reader = HashingReader(io.BytesIO(data))

    assert reader.read(1000) == data[:1000]
    reader.drain()

    assert reader.size == len(data)
    assert reader.sha256 == hashlib.sha256(data).hexdigest()
