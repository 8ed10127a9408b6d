"""Everything pgvault knows about PostgreSQL: connection info, client tools, the server."""
