"""Reading what a dump holds: ``pg_restore --list`` output, and COPY headers of plain SQL
found as the bytes stream past in chunks of any size."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from pgvault.dumps.toc import CopyScanner, TocEntry, data_tables, object_counts, parse_toc

TOC = """\
;
; Archive created at 2026-11-21 05:30:12 UTC
;     dbname: pagila
;     TOC Entries: 15
;     Compression: none
;
;
; Selected TOC Entries:
;
4; 2615 2200 SCHEMA - public pg_database_owner
5435; 0 0 COMMENT - SCHEMA public pg_database_owner
1063; 1247 16386 TYPE public mpaa_rating postgres
261; 1255 16407 FUNCTION public last_updated() postgres
217; 1259 16412 TABLE public actor postgres
216; 1259 16411 SEQUENCE public actor_actor_id_seq postgres
5436; 0 0 SEQUENCE OWNED BY public actor_actor_id_seq postgres
230; 1259 16500 MATERIALIZED VIEW public rental_by_category postgres
5401; 0 16412 TABLE DATA public actor postgres
5402; 0 16800 TABLE DATA sales my table postgres
5500; 0 0 SEQUENCE SET public actor_actor_id_seq postgres
5200; 2606 16600 CONSTRAINT public actor actor_pkey postgres
5300; 2606 16700 FK CONSTRAINT public film_actor film_actor_actor_id_fkey postgres
5310; 0 0 INDEX ATTACH public payment_p2022_01_pkey postgres
5600; 0 16500 MATERIALIZED VIEW DATA public rental_by_category postgres
;5403; 0 16900 TABLE DATA public skipped postgres
"""


def test_parse_toc_reads_types_schemas_and_names() -> None:
    entries = parse_toc(TOC)

    assert entries[:3] == [
        TocEntry("SCHEMA", "-", "public"),
        TocEntry("COMMENT", "-", "SCHEMA public"),
        TocEntry("TYPE", "public", "mpaa_rating"),
    ]
    assert TocEntry("SEQUENCE OWNED BY", "public", "actor_actor_id_seq") in entries
    assert TocEntry("FK CONSTRAINT", "public", "film_actor film_actor_actor_id_fkey") in entries
    assert TocEntry("MATERIALIZED VIEW DATA", "public", "rental_by_category") in entries
    assert len(entries) == 15  # the commented-out entry is not selected


def test_data_tables_and_object_counts() -> None:
    entries = parse_toc(TOC)

    assert data_tables(entries) == [("public", "actor"), ("sales", "my table")]
    assert object_counts(entries) == {
        "COMMENT": 1,
        "CONSTRAINT": 1,
        "FK CONSTRAINT": 1,
        "FUNCTION": 1,
        "INDEX ATTACH": 1,
        "MATERIALIZED VIEW": 1,
        "MATERIALIZED VIEW DATA": 1,
        "SCHEMA": 1,
        "SEQUENCE": 1,
        "SEQUENCE OWNED BY": 1,
        "SEQUENCE SET": 1,
        "TABLE": 1,
        "TABLE DATA": 2,
        "TYPE": 1,
    }
    assert parse_toc("") == [] and parse_toc("pg_restore: error: junk\n") == []


TABLES = [
    ("public.actor", ("public", "actor")),
    ('"My Schema"."odd.table"', ("My Schema", "odd.table")),
    ('public."say ""hi"""', ("public", 'say "hi"')),
    ('"Ünïcode"."表"', ("Ünïcode", "表")),
]


def _plain_dump(columns: int) -> tuple[bytes, list[tuple[str, str]]]:
    cols = ", ".join(f"column_number_{i}" for i in range(columns))
    parts = ["--\n-- PostgreSQL database dump\n--\n\nSET statement_timeout = 0;\n"]
    for qualified, _ in TABLES:
        parts.append(f"\n--\n-- Data for Name: x\n--\n\nCOPY {qualified} ({cols}) FROM stdin;\n")
        parts.append("1\tCOPY public.not_a_table (a) FROM stdin;\n2\tb\n\\.\n")
    parts.append("\nSELECT pg_catalog.setval('public.actor_actor_id_seq', 200, true);\n")
    return "".join(parts).encode(), [names for _, names in TABLES]


@given(cuts=st.lists(st.integers(min_value=0), max_size=40), columns=st.integers(1, 40))
def test_copy_scanner_finds_every_table_whatever_the_chunks(cuts: list[int], columns: int) -> None:
    dump, expected = _plain_dump(columns)
    scanner = CopyScanner()
    bounds = [0, *sorted(c % (len(dump) + 1) for c in cuts), len(dump)]

    for start, end in zip(bounds, bounds[1:], strict=False):
        scanner.feed(dump[start:end])

    assert scanner.tables == expected


def test_copy_scanner_byte_by_byte() -> None:
    dump, expected = _plain_dump(30)
    scanner = CopyScanner()

    for i in range(len(dump)):
        scanner.feed(dump[i : i + 1])

    assert scanner.tables == expected
