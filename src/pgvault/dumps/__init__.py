"""dumps."""
