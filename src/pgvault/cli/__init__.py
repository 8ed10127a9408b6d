"""The `pgvault` command line: a thin shell over the domain modules."""
