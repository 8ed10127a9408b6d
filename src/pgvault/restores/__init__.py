"""restores."""
