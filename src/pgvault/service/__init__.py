"""The service's own domain: who may do what, what ran, and who did it.

Owns ``users`` (roles, logins with throttling), ``tokens`` (JWT access, rotating refresh, API
and download-link tokens), ``audit`` (the audit log) and ``jobs`` (backups, restores and
verifications running in threads with progress and cancellation). It holds no HTTP code:
the API shell calls it.
"""
