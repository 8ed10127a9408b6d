"""Pure parts of point-in-time recovery: WAL names and LSNs, the tar tap, command lines,
recovery targets, recovery log lines, and the retention of base backups and WAL."""

from __future__ import annotations

import io
import tarfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pgvault.catalog.physical import PhysicalBackupRecord
from pgvault.config.operations import RetentionSettings
from pgvault.errors import ArchiveError, ConfigError
from pgvault.operations.physical_retention import decide, wal_cutoffs
from pgvault.physical import walnames
from pgvault.physical.basebackup import needed_segments, parse_manifest
from pgvault.physical.cluster import RecoveryLog
from pgvault.physical.recovery import conf_value, parse_target
from pgvault.physical.tarscan import TarExtractor, TarTap
from pgvault.postgres import physical_commands as cmd

MIB16 = 16 * 1024 * 1024


def test_lsn_text_round_trips() -> None:
    assert walnames.parse_lsn("0/3000028") == 0x3000028
    assert walnames.parse_lsn("1A/FF") == (0x1A << 32) | 0xFF
    assert walnames.format_lsn(0x1A000000FF) == "1A/FF"
    with pytest.raises(ConfigError, match="not an LSN"):
        walnames.parse_lsn("3000028")


@given(st.integers(1, 0xFFFF), st.integers(0, 2**40 - 1))  # 2**64 bytes of WAL
def test_segment_names_round_trip(timeline: int, number: int) -> None:
    segment = walnames.Segment(timeline, number)
    name = segment.name(MIB16)
    assert walnames.is_segment(name) and len(name) == 24
    assert walnames.parse_segment(name, MIB16) == segment
    assert walnames.segment_of(segment.start_lsn(MIB16), timeline, MIB16) == segment
    assert walnames.segment_of(segment.end_lsn(MIB16) - 1, timeline, MIB16) == segment


def test_segment_names_follow_postgresql() -> None:
    # XLogFileName: 256 segments of 16 MiB per log id; 0/FF000000 is segment 0xFF
    assert walnames.Segment(1, 0xFF).name() == "0000000100000000000000FF"
    assert walnames.Segment(1, 0x100).name() == "000000010000000100000000"
    assert walnames.Segment(2, 3).name(64 * 1024 * 1024) == "000000020000000000000003"
    assert walnames.history_name(2) == "00000002.history"
    assert walnames.timeline_of("00000002.history") == 2
    with pytest.raises(ConfigError):
        walnames.parse_segment("000000010000000000000100")  # segment 256 of a log id
    assert not walnames.is_segment("000000010000000000000003.partial")


def test_gaps_between_numbers() -> None:
    assert walnames.missing_between([1, 2, 5, 6, 9]) == [(3, 4), (7, 8)]
    assert walnames.missing_between([4]) == []


def _tar(members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


@given(st.integers(1, 4096), st.binary(max_size=3000))
def test_tar_tap_keeps_the_members_asked_for_whatever_the_chunking(
    chunk: int, manifest: bytes
) -> None:
    stream = _tar(
        {
            "base/1/1259": b"x" * 1500,
            "global/pg_control": b"c" * 8192,
            "backup_manifest": manifest,
            "empty": b"",
        }
    )
    tap = TarTap(["backup_manifest", "empty"])
    for start in range(0, len(stream), chunk):
        tap.feed(stream[start : start + chunk])
    assert tap.found == {"backup_manifest": manifest, "empty": b""}
    assert tap.members == 4 and tap.ended


def test_tar_tap_refuses_what_is_not_tar() -> None:
    with pytest.raises(ArchiveError, match="not a tar archive"):
        TarTap(["x"]).feed(b"PGDMP" + b"\0" * 600)


def test_manifest_gives_the_wal_range() -> None:
    manifest = (
        b'{"PostgreSQL-Backup-Manifest-Version": 2, "System-Identifier": 7714, "Files": [],'
        b' "WAL-Ranges": [{"Timeline": 1, "Start-LSN": "0/2000028", "End-LSN": "0/2000120"}]}'
    )
    assert parse_manifest(manifest) == (0x2000028, 0x2000120, 1, "7714")
    with pytest.raises(ArchiveError, match="unreadable backup_manifest"):
        parse_manifest(b"{}")


def _record(
    backup_id: str, days_ago: float, parent: str | None = None, **extra: object
) -> PhysicalBackupRecord:
    now = datetime(2026, 12, 1, tzinfo=UTC)
    fields: dict[str, object] = {
        "id": backup_id,
        "database": "app",
        "server": "db:5432",
        "storage": "local",
        "storage_key": f"base/1/{backup_id}/base.tar.zst",
        "status": "completed",
        "kind": "incremental" if parent else "full",
        "parent_id": parent,
        "started_at": now - timedelta(days=days_ago),
        "system_identifier": "1",
        "segment_size": MIB16,
        **extra,
    }
    return PhysicalBackupRecord.model_validate(fields)


def test_needed_segments_span_start_to_stop() -> None:
    record = _record(
        "b", 0, start_wal="000000010000000000000002", stop_wal="000000010000000000000004"
    )
    assert needed_segments(record) == [
        "000000010000000000000002",
        "000000010000000000000003",
        "000000010000000000000004",
    ]


def test_retention_keeps_what_a_kept_incremental_depends_on() -> None:
    history = [
        _record("full-old", 9),
        _record("full", 5),
        _record("inc1", 4, parent="full"),
        _record("inc2", 3, parent="inc1"),
    ]
    now = datetime(2026, 12, 1, tzinfo=UTC)
    fates = {
        f.backup_id: f
        for f in decide(history, RetentionSettings(keep_last=1, minimum_redundancy=1), now)
    }
    assert fates["inc2"].keep
    assert fates["inc1"].keep and fates["inc1"].reasons == ["incremental inc2 depends on it"]
    assert fates["full"].keep and fates["full"].reasons == ["incremental inc1 depends on it"]
    assert not fates["full-old"].keep


def test_wal_is_cut_at_the_oldest_kept_backup_per_cluster() -> None:
    history = [
        _record("a", 9, start_wal="000000010000000000000002"),
        _record("b", 5, start_wal="000000010000000000000009"),
        _record("c", 1, start_wal="00000002000000000000000C", system_identifier="2"),
    ]
    assert wal_cutoffs(history, {"b", "c"}) == {
        "1": "000000010000000000000009",
        "2": "00000002000000000000000C",
    }
    assert wal_cutoffs(history, set()) == {}


def test_recovery_targets() -> None:
    moment = parse_target(time="2026-12-01 14:32:05+00")
    assert moment.settings() == {"recovery_target_time": "2026-12-01 14:32:05+00:00"}
    assert parse_target(lsn="0/3000028").settings() == {"recovery_target_lsn": "0/3000028"}
    assert parse_target(name="before").settings() == {"recovery_target_name": "before"}
    assert parse_target(latest=True).settings() == {}
    with pytest.raises(ConfigError, match="no time zone"):
        parse_target(time="2026-12-01 14:32:05")
    with pytest.raises(ConfigError, match="exactly one"):
        parse_target(time="2026-12-01 14:32:05+00", latest=True)
    with pytest.raises(ConfigError, match="exactly one"):
        parse_target()


def test_conf_values_are_quoted() -> None:
    assert conf_value("/a b/fetch.sh %f %p") == "'/a b/fetch.sh %f %p'"
    assert conf_value("it's") == "'it''s'"


def test_recovery_log_lines(tmp_path: Path) -> None:
    log = tmp_path / "postgresql.log"
    log.write_text(
        "2026-12-01 20:32:43.791 UTC [1] LOG:  recovery stopping before commit of transaction "
        "759, time 2026-12-01 20:32:41.840598+00\n"
        "2026-12-01 20:32:43.791 UTC [1] LOG:  redo done at 0/3006240 system usage: ...\n"
        "2026-12-01 20:32:43.791 UTC [1] LOG:  last completed transaction was at log time "
        "2026-12-01 20:32:41.693847+05:30\n"
        "2026-12-01 20:32:43.893 UTC [1] LOG:  archive recovery complete\n"
        "2026-12-01 20:32:43.905 UTC [1] LOG:  database system is ready to accept connections\n"
        "partial line without newline"
    )
    watch = RecoveryLog(log)
    watch.read()
    assert watch.redo_done == 0x3006240 and watch.promoted and watch.ready
    assert watch.last_xact == datetime(2026, 12, 1, 15, 2, 41, 693847, tzinfo=UTC)
    assert watch.stopping is not None and "transaction 759" in watch.stopping
    assert not watch.not_reached and watch.fatal is None
    with open(log, "a") as handle:
        handle.write("\nFATAL:  recovery ended before configured recovery target was reached\n")
    watch.read()
    assert watch.not_reached and watch.fatal is not None


def test_command_lines() -> None:
    bin_ = Path("/pg/bin")
    assert cmd.pg_receivewal_command(bin_ / "pg_receivewal", "host=db", Path("/s"), slot="x") == [
        "/pg/bin/pg_receivewal",
        "--dbname=host=db",
        "--directory=/s",
        "--slot=x",
        "--no-loop",
        "--no-password",
        "--status-interval=2",
        "--verbose",
    ]
    backup = cmd.pg_basebackup_command(
        bin_ / "pg_basebackup", "host=db", label="l", incremental_manifest=Path("/m")
    )
    for flag in (
        "--pgdata=-",
        "--format=tar",
        "--wal-method=none",
        "--checkpoint=fast",
        "--manifest-checksums=SHA256",
        "--incremental=/m",
    ):
        assert flag in backup
    start = cmd.pg_ctl_start_command(
        bin_ / "pg_ctl", Path("/d"), Path("/d/log"), {"port": "5433", "x": "a b'c"}
    )
    assert start[-1] == "--options=-c port=5433 -c 'x=a b'\"'\"'c'"
    assert cmd.pg_combinebackup_command(bin_ / "c", [Path("/a"), Path("/b")], Path("/o")) == [
        "/pg/bin/c",
        "--no-sync",
        "--output=/o",
        "/a",
        "/b",
    ]


def _tar_with(*members: tarfile.TarInfo, data: bytes = b"") -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for info in members:
            tar.addfile(info, io.BytesIO(data) if info.isfile() else None)
    return out.getvalue()


def _member(name: str, kind: bytes = tarfile.REGTYPE, size: int = 0) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.size, info.mode = kind, size, 0o600
    return info


def test_extractor_writes_files_and_directories(tmp_path: Path) -> None:
    stream = _tar({"PG_VERSION": b"18\n", "global/pg_control": b"c" * 8192})
    with_dirs = _tar_with(_member("./global/", tarfile.DIRTYPE))[:512] + stream
    extractor = TarExtractor(tmp_path)
    for start in range(0, len(with_dirs), 700):
        extractor.feed(with_dirs[start : start + 700])
    extractor.close()
    assert (tmp_path / "PG_VERSION").read_bytes() == b"18\n"
    assert (tmp_path / "global" / "pg_control").read_bytes() == b"c" * 8192
    assert extractor.files == 2


@pytest.mark.parametrize(
    ("member", "message"),
    [
        (_member("../outside", size=1), "unsafe name"),
        (_member("/etc/passwd", size=1), "unsafe name"),
        (_member("base/../../x", size=1), "unsafe name"),
        (_member("link", tarfile.SYMTYPE), "refused tar type"),
        (_member("hard", tarfile.LNKTYPE), "refused tar type"),
        (_member("dev", tarfile.CHRTYPE), "refused tar type"),
    ],
)
def test_extractor_refuses_what_could_escape(
    tmp_path: Path, member: tarfile.TarInfo, message: str
) -> None:
    member.linkname = "/etc" if member.issym() or member.islnk() else ""
    root = tmp_path / "data"
    root.mkdir()
    with pytest.raises(ArchiveError, match=message):
        TarExtractor(root).feed(_tar_with(member, data=b"x"))
    assert list(root.iterdir()) == [] and not (tmp_path / "outside").exists()


def test_extractor_notices_a_cut_stream(tmp_path: Path) -> None:
    stream = _tar({"PG_VERSION": b"18\n" * 300})
    extractor = TarExtractor(tmp_path)
    extractor.feed(stream[:700])
    with pytest.raises(ArchiveError, match="cut short"):
        extractor.close()
