"""pgvault: PostgreSQL backup and restore with a catalog and safe restores."""

__version__ = "0.1.0"
