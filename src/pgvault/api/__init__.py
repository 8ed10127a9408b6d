"""The pgvault HTTP API: a FastAPI shell over the domain packages (``/api/v1``).

``app`` wires the service's parts, ``routes`` has one module per resource, ``schemas`` the
bodies (built from the domain's records), ``errors`` the one mapping of errors to statuses.
No backup, restore or policy logic lives here.
"""

from pgvault.api.app import create_app

__all__ = ["create_app"]
