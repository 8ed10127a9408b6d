"""The ``pgvault`` command line: a thin shell over the domain packages.

Each module registers its commands (``app`` holds the order and the error handling); a
command parses its options, calls one domain function and renders the answer through
``render``. No backup, restore or policy logic lives here.
"""
