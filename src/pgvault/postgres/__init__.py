"""Everything pgvault knows about PostgreSQL itself: connection info, client tools, servers.

Owns ``conninfo`` (libpq URLs, passwords kept out of argv), ``tools`` (finding pg_dump and
friends and their versions), ``commands`` (pure argv builders), ``runner`` (the streaming
child-process runner), ``server`` (psycopg queries) and ``sqlscript`` (filters on SQL text).
It knows nothing of backups, storage or the catalog.
"""
