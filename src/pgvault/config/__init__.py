"""Settings: what pgvault reads from its config file and ``PGVAULT_*`` environment.

Owns the frozen pydantic-settings models (``settings``: storage targets, databases, the
service; ``operations``: schedules, retention, drills, freshness, notifications) and how they
are loaded. It reads no server, no storage and no catalog: it only describes.
"""
