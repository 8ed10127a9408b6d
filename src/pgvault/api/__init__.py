"""The pgvault service: a FastAPI shell over the domain modules (see :mod:`pgvault.api.app`)."""

from pgvault.api.app import create_app

__all__ = ["create_app"]
