"""Unattended operation: what runs without anyone at the keyboard, and how it is watched.

Owns ``retention`` (pure decisions, also for file sets and base backups), ``prune_plans``
(reading and planning) and ``prune`` (applying them; ``file_retention``,
``physical_retention``), ``schedules`` (cron in a time zone; ``file_schedules``,
``physical_schedules``) and the ``scheduler`` (APScheduler 3 threads), ``verify`` (checks
and restore drills), ``monitoring`` and ``file_health`` (health and metrics),
``targets`` (storage targets' status), ``doctor`` and ``demo``. It takes and restores
backups only through the domain packages (``backups``, ``restores``, ``files``,
``physical``).
"""
