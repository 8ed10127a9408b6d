"""Sample databases shipped with pgvault (data files, with their licences): Pagila, used by
``pgvault demo`` and by the test suite. Nothing here runs; :func:`pagila_dir` finds them."""

from __future__ import annotations

from pathlib import Path


def pagila_dir() -> Path:
    """The directory holding ``pagila-schema.sql``, ``pagila-data.sql`` and ``LICENSE.txt``."""
    return Path(__file__).parent / "pagila"
