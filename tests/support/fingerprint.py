"""Database fingerprints: compare a restored database with its source, or with pagila's.

The data and catalog parts come from the project's shared helper scripts
(``shared/data/pagila/verify_fingerprint.sql`` and ``verify_counts.sql``, which work on any
database, not only pagila); the schema part is a normalized ``pg_dump --schema-only`` made by
the newest ``pg_dump`` available, so databases on different majors are dumped alike.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

from support.pgcluster import PAGILA_DIR, PgCluster, newest_bindir

_DUMP_NOISE = re.compile(r"^(--|\\restrict |\\unrestrict )")


@dataclass(frozen=True)
class Fingerprint:
    """What must survive a backup and restore of one database.

    Attributes:
        tables: table (and populated materialized view) name, as ``regclass`` prints it, to
            ``"rows:md5"`` of its sorted rows, e.g. ``{"actor": "200:fe2f..."}``.
        sequences: ``"schema.sequence"`` to its ``last_value`` (``"NULL"`` if never used).
        large_objects: ``"count:md5"`` of all large objects' contents (``"0:-"`` if none).
        objects: catalog object counts, ``{"views": "7", ...}`` (``verify_counts.sql``).
        schema: normalized ``pg_dump --schema-only`` text (no ``--`` comments, no
            ``\\restrict`` lines, blank-line runs collapsed).
    """

    tables: dict[str, str]
    sequences: dict[str, str]
    large_objects: str
    objects: dict[str, str]
    schema: str

    def entries(self) -> dict[str, str]:
        """The data part in ``expected_fingerprint.txt``'s shape: ``{"table actor": "200:..",
        "sequence public.x_seq": "200", "large_objects": "0:-"}``."""
        out = {f"table {k}": v for k, v in self.tables.items()}
        out.update({f"sequence {k}": v for k, v in self.sequences.items()})
        out["large_objects"] = self.large_objects
        return out


def _parse_pairs(text: str, sep: str) -> dict[str, str]:
    """``"key<sep>value"`` lines to a dict; the key may contain ``sep``, the value may not."""
    pairs = (line.rsplit(sep, 1) for line in text.splitlines() if line.strip())
    return dict(pairs)


def normalize_schema_dump(text: str) -> str:
    """Drop ``--`` comment lines and ``\\restrict``/``\\unrestrict`` lines (a random key per
    dump), collapse runs of blank lines to one, strip leading/trailing blank lines."""
    kept = [line.rstrip() for line in text.splitlines() if not _DUMP_NOISE.match(line)]
    out: list[str] = []
    for line in kept:
        if line or (out and out[-1]):
            out.append(line)
    return "\n".join(out).strip("\n") + "\n"


def database_fingerprint(cluster: PgCluster, dbname: str) -> Fingerprint:
    """Fingerprint ``dbname`` on ``cluster`` (~0.2 s for pagila).

    Raises:
        support.pgcluster.PgClusterError: psql or pg_dump failed (e.g. no such database).
    """
    fp_sql = str(PAGILA_DIR / "verify_fingerprint.sql")
    data = cluster.client(
        "psql", "-X", "-q", "-At", "-F", " ", "-v", "ON_ERROR_STOP=1", "-d", dbname, "-f", fp_sql
    )
    counts_sql = str(PAGILA_DIR / "verify_counts.sql")
    counts = cluster.client(
        "psql",
        "-X",
        "-q",
        "-At",
        "-F",
        "|",
        "-v",
        "ON_ERROR_STOP=1",
        "-d",
        dbname,
        "-f",
        counts_sql,
    )
    pg_dump = str(newest_bindir(cluster.bindir) / "pg_dump")
    dump = cluster.client(pg_dump, "--schema-only", "--no-statistics", "-d", dbname)
    entries = _parse_pairs(data, " ")
    return Fingerprint(
        tables={k.removeprefix("table "): v for k, v in entries.items() if k.startswith("table ")},
        sequences={
            k.removeprefix("sequence "): v for k, v in entries.items() if k.startswith("sequence ")
        },
        large_objects=entries.get("large_objects", "?"),
        objects=_parse_pairs(counts, "|"),
        schema=normalize_schema_dump(dump),
    )


def expected_pagila_fingerprint() -> dict[str, str]:
    """``expected_fingerprint.txt`` as ``{"table actor": "200:fe2f...", "sequence ...": ...}``;
    compare with :meth:`Fingerprint.entries`."""
    return _parse_pairs((PAGILA_DIR / "expected_fingerprint.txt").read_text("utf-8"), " ")


def expected_pagila_counts() -> dict[str, str]:
    """``expected_counts.txt`` as ``{"views": "7", ...}``; compare with ``Fingerprint.objects``."""
    return _parse_pairs((PAGILA_DIR / "expected_counts.txt").read_text("utf-8"), "|")


def _dict_diff(
    what: str, a: dict[str, str], b: dict[str, str], names: tuple[str, str]
) -> list[str]:
    lines = []
    for key in sorted(a.keys() | b.keys()):
        va, vb = a.get(key, "(missing)"), b.get(key, "(missing)")
        if va != vb:
            lines.append(f"  {what} {key}: {names[0]}={va} {names[1]}={vb}")
    return lines


def assert_same_database(
    a: Fingerprint,
    b: Fingerprint,
    *,
    names: tuple[str, str] = ("source", "restored"),
    schema: bool = True,
    max_schema_diff_lines: int = 80,
) -> None:
    """Assert two fingerprints match.

    Args:
        a, b: the fingerprints, named ``names`` in the message.
        schema: also compare the normalized schema dumps.
        max_schema_diff_lines: cut the schema's unified diff after this many lines.

    Raises:
        AssertionError: listing every differing table, sequence and object count, the large
            objects, and an excerpt of the schema diff.
    """
    problems = _dict_diff("table", a.tables, b.tables, names)
    problems += _dict_diff("sequence", a.sequences, b.sequences, names)
    problems += _dict_diff("count of", a.objects, b.objects, names)
    if a.large_objects != b.large_objects:
        problems.append(
            f"  large objects: {names[0]}={a.large_objects} {names[1]}={b.large_objects}"
        )
    if schema and a.schema != b.schema:
        diff = list(
            difflib.unified_diff(
                a.schema.splitlines(), b.schema.splitlines(), *names, lineterm="", n=2
            )
        )
        more = len(diff) - max_schema_diff_lines
        problems.append("  schema differs:")
        problems += ["    " + line for line in diff[:max_schema_diff_lines]]
        if more > 0:
            problems.append(f"    ... {more} more diff lines")
    if problems:
        raise AssertionError(
            f"databases differ ({names[0]} vs {names[1]}):\n" + "\n".join(problems)
        )
