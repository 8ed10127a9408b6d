"""Kill, fault and bad-input trials with figures (issue 9, point 8), on real PostgreSQL 18
and, for uploads, a real S3 server (moto over HTTP).

* backups: a pgvault process SIGKILLed at a random moment of a backup, 20 times; after the
  next start no row is ``running``, no ``completed`` row is wrong, no partial file is left;
* swap restores: SIGKILLed 20 times, at a random journaled step or a random moment; the
  live name then answers with the whole old or the whole new content, no scratch is left;
* malformed uploads: 100 cut, padded, mixed or poisoned dumps to ``restore-upload``, all
  refused with a 4xx, nothing stored in the bucket, no database touched;
* psql meta-commands: 8 kinds in a plain file, all refused, nothing run.

Each prints one line of figures at the end of the run (and the seed, to replay it with
``PGVAULT_TRIALS_SEED``).
"""

from __future__ import annotations

import gzip
import io
import os
import random
import signal
import subprocess
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import zstandard

from pgvault import backups, restores
from pgvault.backups import BackupRequest
from pgvault.catalog import Catalog
from pgvault.config.settings import Settings, load_settings
from pgvault.databases import DatabaseTarget, from_url
from pgvault.dumps import wholeness
from pgvault.errors import ArchiveError, PgvaultError
from pgvault.operations import startup
from pgvault.restores.journal import SWAP_STEPS
from pgvault.restores.steps import PRE_RESTORE_MARK, SCRATCH_MARK
from support.apiserver import ApiServer, database_entry
from support.dumptar import directory_tar
from support.forker import Forker
from support.pgcluster import PgCluster
from support.s3server import MotoServer
from support.trialfigures import FIGURES
from support.vault import clean_env, unique_name

BACKUP_KILLS = 20
SWAP_KILLS = 20
MALFORMED_UPLOADS = 100
SMALL = (
    "CREATE TABLE a AS SELECT g AS id, md5(g::text) AS t FROM generate_series(1, 3000) g;"
    "CREATE TABLE b (id int PRIMARY KEY, v text);"
    "INSERT INTO b SELECT g, repeat('x', g % 40) FROM generate_series(1, 800) g;"
)
RESULTS: dict[str, str] = {}


ORDER = ("backup", "swap restore", "malformed uploads", "psql meta-commands")


def _report(name: str, line: str, seed: int) -> None:
    """Print the trial's figures; once all four ran, their summary line too."""
    RESULTS[name] = line
    FIGURES.append(f"{name}: {line} (seed {seed})")
    if set(RESULTS) == set(ORDER):
        joined = " · ".join(f"{n} {RESULTS[n]}" for n in ORDER)
        FIGURES.append(f"kill trials: {joined} (seed {seed})")


@pytest.fixture
def small_db(trial_cluster: PgCluster) -> Iterator[str]:
    """A small database of two tables, dropped with its restore leftovers afterwards."""
    name = unique_name("trial")
    trial_cluster.create_database(name)
    trial_cluster.psql(SMALL, name)
    yield name
    for db in trial_cluster.databases():
        if db == name or db.startswith(f"{name}_"):
            trial_cluster.drop_database(db)


def _content(cluster: PgCluster, db: str) -> str:
    """Every row of both tables, as one md5 (the database's whole content here)."""
    return cluster.psql(
        "SELECT md5((SELECT string_agg(a::text, ',' ORDER BY id) FROM a) || '|' || "
        "(SELECT string_agg(b::text, ',' ORDER BY id) FROM b))",
        db,
    )


def _home(tmp_path: Path) -> tuple[Path, Settings, Catalog]:
    home = tmp_path / "home"
    settings = load_settings(home=home)
    return home, settings, Catalog.open(settings.catalog_location)


def _whole(settings: Settings, record_key: str) -> bool:
    path = Path(settings.default_storage_location) / record_key
    try:
        with open(path, "rb") as raw:
            wholeness.check_opened(raw)
    except (OSError, PgvaultError):
        return False
    return True


def _backup_state(settings: Settings, catalog: Catalog, left: set[str]) -> tuple[int, int, int]:
    """``(completed wrongly, running, partial or orphan files)`` of the trial's home; the
    names of those files are added to ``left`` (the report names them)."""
    rows = catalog.list_backups(include_deleted=True)
    completed = [r for r in rows if r.status == "completed"]
    wrong = sum(not _whole(settings, r.storage_key) for r in completed)
    running = sum(r.status == "running" for r in rows)
    root = Path(settings.default_storage_location)
    stored = {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}
    expected = {r.storage_key for r in completed} | {r.manifest_key for r in completed}
    left |= stored - expected
    return wrong, running, len(stored - expected)


def test_backup_kill_trial(
    trial_cluster: PgCluster, small_db: str, tmp_path: Path, rng: random.Random, seed: int
) -> None:
    home, settings, catalog = _home(tmp_path)
    url = trial_cluster.url(small_db, with_password=True)
    forker = Forker(clean_env())
    right, killed, totals = 0, 0, [0, 0, 0]
    left: set[str] = set()
    try:
        for _ in range(2):  # two whole backups first (the first migrates the catalog)
            started = time.monotonic()
            assert forker.wait(forker.start(run="backup", home=str(home), url=url)) == 0
            span = time.monotonic() - started
        for _ in range(BACKUP_KILLS):
            pid = forker.start(run="backup", home=str(home), url=url)
            time.sleep(rng.uniform(0, span))
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            killed += forker.wait(pid) == -signal.SIGKILL
            startup.recover(settings, catalog)  # the next start of any pgvault process
            state = _backup_state(settings, catalog, left)
            right += state == (0, 0, 0)
            totals = [t + s for t, s in zip(totals, state, strict=True)]
    finally:
        forker.close()
    finished = sum(r.status == "completed" for r in catalog.list_backups()) - 2
    wrong, running, partial = totals
    _report(
        "backup",
        f"{right}/{BACKUP_KILLS} ({wrong} completed wrongly, {running} running, "
        f"{partial} partial files; {killed} killed mid-run, {finished} had finished)",
        seed,
    )
    assert (right, totals) == (BACKUP_KILLS, [0, 0, 0]), sorted(left)


def test_swap_restore_kill_trial(
    trial_cluster: PgCluster,
    small_db: str,
    tmp_path: Path,
    rng: random.Random,
    seed: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PGPASSWORD", trial_cluster.password)  # the repair reaches the server
    home, settings, catalog = _home(tmp_path)
    url = trial_cluster.url(small_db, with_password=True)
    target = from_url(settings, url)
    record = backups.create(
        settings, catalog, BackupRequest(target=target, dump_format="custom", with_globals=False)
    )
    new = _content(trial_cluster, small_db)
    forker = Forker(clean_env())
    whole = scratch_left = 0
    try:
        started = time.monotonic()
        assert forker.wait(_restore(forker, home, url, record.id, None)) == 0
        span = time.monotonic() - started
        for _ in range(SWAP_KILLS):
            _drop_previous(trial_cluster, small_db)
            trial_cluster.psql(f"UPDATE a SET t = '{rng.random()}' WHERE id = 1", small_db)
            old = _content(trial_cluster, small_db)
            step = rng.choice(SWAP_STEPS) if rng.random() < 0.5 else None
            pid = _restore(forker, home, url, record.id, step)
            if step is None:
                time.sleep(rng.uniform(0, span))
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            forker.wait(pid)
            startup.recover(settings, catalog)
            after = _content(trial_cluster, small_db)  # it answers (or this raises)
            whole += after in (old, new)
            scratch_left += sum(SCRATCH_MARK in db for db in trial_cluster.databases())
    finally:
        forker.close()
    running = [r for r in catalog.list_restores(limit=1000) if r.status == "running"]
    _report(
        "swap restore",
        f"{whole}/{SWAP_KILLS} (live DB whole and connectable in {whole}, "
        f"{scratch_left} scratch left, {len(running)} running)",
        seed,
    )
    assert (whole, scratch_left, running) == (SWAP_KILLS, 0, [])


def _restore(forker: Forker, home: Path, url: str, backup_id: str, step: str | None) -> int:
    return forker.start(run="restore", home=str(home), url=url, backup_id=backup_id, kill_at=step)


def _drop_previous(cluster: PgCluster, live: str) -> None:
    for db in cluster.databases():
        if db.startswith(f"{live}{PRE_RESTORE_MARK}"):
            cluster.drop_database(db)


def _dumps(cluster: PgCluster, db: str, where: Path) -> dict[str, bytes]:
    """The small database as custom, directory (tar) and plain dumps."""
    run = [str(cluster.bindir / "pg_dump"), "-d", cluster.url(db)]
    env = cluster.env()
    custom = subprocess.run([*run, "-Fc"], env=env, check=True, capture_output=True).stdout
    plain = subprocess.run([*run, "-Fp"], env=env, check=True, capture_output=True).stdout
    subprocess.run([*run, "-Fd", "-f", str(where / "dir")], env=env, check=True)
    return {"custom": custom, "tar": directory_tar(where / "dir"), "plain": plain}


def _malformed(dumps: dict[str, bytes], rng: random.Random) -> Iterator[tuple[str, bytes]]:
    """Uploads that must all be refused: cut anywhere (raw, gzip or zstd), padded after the
    end, a tar short of files its TOC names, plain SQL without its trailer or with a psql
    meta-command, and bytes that are no dump at all."""
    kinds = sorted(dumps)
    wrap = {
        "raw": lambda b: b,
        "gzip": lambda b: gzip.compress(b, 1),
        "zstd": lambda b: zstandard.ZstdCompressor().compress(b),
    }
    for number in range(MALFORMED_UPLOADS):
        form = number % 10
        kind = rng.choice(kinds)
        data = dumps[kind]
        layer = rng.choice(sorted(wrap))
        if form < 5:
            end = len(data) - (11_000 if kind == "tar" else 300 if kind == "plain" else 1)
            yield f"cut {kind}/{layer}", wrap[layer](data[: rng.randrange(1, end)])
        elif form == 5:
            yield f"padded custom/{layer}", wrap[layer](dumps["custom"] + os.urandom(64))
        elif form == 6:
            members = tarfile.open(fileobj=io.BytesIO(dumps["tar"]), mode="r").getmembers()
            keep = rng.randrange(1, len(members))
            yield f"tar short/{layer}", wrap[layer](_tar_of(dumps["tar"], members[:keep]))
        elif form == 7:
            lines = dumps["plain"].split(b"\n")
            at = rng.choice(_sql_lines(lines))  # a line psql reads as SQL, not COPY data
            lines.insert(at, rng.choice([b"\\! id", b"\\o /tmp/x", b"SELECT 1 \\gexec"]))
            yield f"meta-command/{layer}", wrap[layer](b"\n".join(lines))
        elif form == 8:
            yield f"no trailer/{layer}", wrap[layer](dumps["plain"].rsplit(b"-- PostgreSQL", 1)[0])
        else:
            yield "junk", rng.choice([b"", os.urandom(rng.randrange(1, 70_000)), b"PGDMP" * 9])


def _sql_lines(lines: list[bytes]) -> list[int]:
    """Indexes of the lines of a plain dump outside ``COPY ... FROM stdin`` data."""
    found, in_copy = [], False
    for number, line in enumerate(lines):
        if in_copy:
            in_copy = line != b"\\."
        elif line.startswith(b"COPY ") and line.endswith(b"FROM stdin;"):
            in_copy = True
        elif number > 0:
            found.append(number)
    return found


def _tar_of(tar: bytes, members: list[tarfile.TarInfo]) -> bytes:
    source = tarfile.open(fileobj=io.BytesIO(tar), mode="r")
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w|") as copy:
        for member in members:
            copy.addfile(member, source.extractfile(member))
    return out.getvalue()


def test_malformed_upload_trial(
    trial_cluster: PgCluster,
    trial_s3: MotoServer,
    small_db: str,
    tmp_path: Path,
    rng: random.Random,
    seed: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in trial_s3.aws_env().items():
        monkeypatch.setenv(name, value)
    bucket = trial_s3.create_bucket()
    dumps = _dumps(trial_cluster, small_db, tmp_path)
    before = (trial_cluster.databases(), _content(trial_cluster, small_db))
    owner = unique_name("owner")
    trial_cluster.psql(f'CREATE ROLE "{owner}"; ALTER DATABASE "{small_db}" OWNER TO "{owner}"')
    server = ApiServer.start(
        tmp_path / "home",
        storage_targets={"s3": {"url": f"s3://{bucket}/uploads", "path_style": True}},
        databases={"app": database_entry(trial_cluster, small_db, storage=["s3"])},
    )
    statuses: dict[str, int] = {}
    try:
        with server.client(server.token("admin")) as admin:
            for number, (what, body) in enumerate(_malformed(dumps, rng)):
                answer = admin.post(
                    "/databases/app/restore-upload",
                    files={"file": (f"upload{number}", body)},
                    data={"confirm": "app"},
                )
                statuses[f"{number} {what}"] = answer.status_code
            jobs = admin.get("/jobs").json()
            listed = admin.get("/backups").json()["items"]
    finally:
        server.stop()
        trial_cluster.psql(f'ALTER DATABASE "{small_db}" OWNER TO postgres; DROP ROLE "{owner}"')
    refused = [k for k, code in statuses.items() if 400 <= code < 500]
    errors = [k for k, code in statuses.items() if code >= 500]
    stored = trial_s3.client().list_objects_v2(Bucket=bucket).get("KeyCount", 0)
    touched = int((trial_cluster.databases(), _content(trial_cluster, small_db)) != before)
    _report(
        "malformed uploads",
        f"{len(refused)}/{MALFORMED_UPLOADS} refused ({touched} databases touched, "
        f"{len(errors)} 5xx, {stored} objects and {len(trial_s3.open_uploads(bucket))} "
        "unfinished uploads left in S3)",
        seed,
    )
    accepted = {k: c for k, c in statuses.items() if c < 400}
    assert (accepted, errors, jobs, listed, stored, touched) == ({}, [], [], [], 0, 0)
    assert trial_s3.open_uploads(bucket) == []


META_COMMANDS = {
    "\\!": "\\! touch {marker}",
    "\\o": "\\o {marker}",
    "\\copy": "\\copy (SELECT 1) to program 'touch {marker}'",
    "\\gexec": "SELECT format('COPY (SELECT 1) TO PROGRAM %L', 'touch {marker}') \\gexec",
    "\\setenv": "\\setenv PAGER 'touch {marker}'",
    "\\w": "\\w {marker}",
    "\\g": "SELECT 1 \\g {marker}",
    "\\connect": "\\connect postgres",
}


def test_psql_meta_command_trial(
    trial_cluster: PgCluster, small_db: str, tmp_path: Path, seed: int
) -> None:
    home, settings, catalog = _home(tmp_path)
    marker = tmp_path / "marker"
    target: DatabaseTarget = from_url(settings, trial_cluster.url(small_db, with_password=True))
    before = _content(trial_cluster, small_db)
    refused = 0
    for number, (command, line) in enumerate(META_COMMANDS.items()):
        evil = tmp_path / f"evil{number}.sql"
        evil.write_text(
            "--\n-- PostgreSQL database dump\n--\n\nCREATE TABLE t (id int);\n"
            f"{line.format(marker=marker)}\n--\n-- PostgreSQL database dump complete\n--\n"
        )
        request = restores.RestoreRequest(
            target=target, file=evil, confirm=small_db, as_superuser=True
        )
        try:
            restores.restore(settings, catalog, request)
        except ArchiveError as exc:
            refused += f"({command}) at line 6: refused" in str(exc)
    untouched = _content(trial_cluster, small_db) == before and not marker.exists()
    _report(
        "psql meta-commands",
        f"{refused}/{len(META_COMMANDS)} refused ({0 if untouched else 1} run)",
        seed,
    )
    assert refused == len(META_COMMANDS) and untouched
    del home
