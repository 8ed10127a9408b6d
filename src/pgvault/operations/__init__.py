"""Unattended operation: what runs without anyone at the keyboard, and how it is watched.

Owns ``retention`` (pure decisions) and ``prune`` (applying them), ``schedules`` (cron in a
time zone) and the ``scheduler`` (APScheduler 3 threads), ``verify`` (checks and restore
drills), ``monitoring`` (health, history, metrics), ``targets`` (storage targets' status),
``notify`` (apprise) and ``doctor``. It takes and restores backups only through
:mod:`pgvault.backups` and :mod:`pgvault.restores`.
"""
