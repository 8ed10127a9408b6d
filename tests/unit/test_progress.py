"""Progress numbers: percent, rate and time left; backup size estimates; the job API's
live progress."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

from pgvault.backups.estimate import BackupEstimate, previous_size
from pgvault.catalog.jobs import JobRecord
from pgvault.catalog.records import BackupRecord
from pgvault.progress import Meter, ProgressEvent
from pgvault.service.jobs import JobContext


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_percent_is_capped_until_the_end_and_unknown_without_a_total() -> None:
    assert ProgressEvent("dumping", 50, 200).percent == 25.0
    assert ProgressEvent("dumping", 300, 200).percent == 99.9  # the estimate was low
    assert ProgressEvent("dumping", 50).percent is None


def test_the_meter_gives_a_rate_and_the_time_left() -> None:
    clock = Clock()
    meter = Meter(clock)
    meter.update(ProgressEvent("dumping", 0, 1000))
    clock.now = 1.0
    event = ProgressEvent("dumping", 100, 1000)
    meter.update(event)

    assert meter.rate == 100.0
    assert meter.eta(event) == 9.0
    meter.update(ProgressEvent("counting", 0))  # a new phase starts over
    assert meter.rate is None


def _record(size: int, fmt: str = "custom", method: str = "zstd") -> BackupRecord:
    return BackupRecord(
        id=f"b{size}",
        database="app",
        dbname="app",
        server="h:5432",
        format=fmt,  # type: ignore[arg-type]
        compression=method,
        storage="local",
        storage_key=f"k{size}",
        started_at=datetime(2026, 1, 1, tzinfo=UTC),
        status="completed",
        size_bytes=size,
    )


def test_the_previous_backup_of_the_same_form_is_the_estimate() -> None:
    history = [_record(10, "directory", "gzip"), _record(500), _record(400)]

    assert previous_size(history, "custom", "zstd") == 500
    assert previous_size(history, "plain", "zstd") is None
    assert BackupEstimate(previous=500).total(100) == 500
    assert BackupEstimate(previous=500).total(700) == 700


def test_without_a_previous_backup_the_copied_share_scales_what_is_stored() -> None:
    estimate = BackupEstimate(tables={1: (600, 1000.0), 2: (400, 100.0)})
    assert estimate.total(10) is None  # nothing copied yet

    estimate.copying(1, 500)  # half of table 1: 300 of 1000 bytes
    assert estimate.total(30) == 100

    estimate.copying(2, 50)  # table 1 done (600) + half of table 2 (200)
    assert estimate.total(80) == 100


def test_a_job_carries_percent_rate_and_time_left() -> None:
    job = JobRecord(id="j", kind="backup", created_at=datetime(2026, 1, 1, tzinfo=UTC))
    saved: list[bool] = []
    clock = Clock()
    context = JobContext(job, threading.Event(), saved.append, Meter(clock))

    context.progress(ProgressEvent("dumping", 0, 4000))
    clock.now = 2.0
    context.progress(ProgressEvent("dumping", 1000, 4000))

    assert job.progress is not None
    assert (job.progress.percent, job.progress.rate, job.progress.eta_seconds) == (25.0, 500.0, 6.0)
    assert (job.phase, job.bytes_done, job.rate) == ("dumping", 1000, 500.0)
    context.step("checking row counts")
    assert job.phase == "checking row counts" and job.progress.unit == "steps"
    assert saved == [False, False, True]
