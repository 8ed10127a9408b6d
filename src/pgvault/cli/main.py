"""Entry point of the `pgvault` command."""


def run() -> None:
    """Run the command line."""
