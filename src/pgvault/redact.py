"""Keeping credentials out of every log line pgvault writes or lets through.

:func:`redact` removes what a log line must never show: the ``user:password@`` of a URL
(a database, an S3 endpoint in botocore's debug lines), a bearer token, an API or refresh
token (``pgv_...``, ``pgvr_...``), a signed download link's token, and ``password=...``
in a libpq key=value string. :class:`RedactingFilter` applies it to every record (message
and traceback) on the handlers :func:`install` covers: the root logger's (the CLI) and the
HTTP server's (uvicorn).
"""

from __future__ import annotations

import logging
import re

_URL_CREDENTIALS = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)[^/\s:@]*:[^/\s@]+@")
_BEARER = re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=\-]{8,}")
_OWN_TOKENS = re.compile(r"\b(pgvr?_)[A-Za-z0-9_\-]{8,}")
_DOWNLOAD = re.compile(r"(/downloads/)([A-Za-z0-9_\-]{6})[A-Za-z0-9._\-]*")
_KEY_VALUE = re.compile(r"(?i)\b(password)(\s*=\s*)('[^']*'|\S+)")  # libpq key=value
HANDLED_LOGGERS = ("", "uvicorn", "uvicorn.error", "uvicorn.access")


def redact(text: str) -> str:
    """``text`` without credentials (see the module doc)."""
    text = _URL_CREDENTIALS.sub(r"\g<scheme>***@", text)
    text = _BEARER.sub(r"\1***", text)
    text = _OWN_TOKENS.sub(r"\1***", text)
    text = _DOWNLOAD.sub(r"\1\2…", text)
    return _KEY_VALUE.sub(r"\1\2***", text)


def mask_path(path: str) -> str:
    """A request path with a download token cut to its first characters."""
    return _DOWNLOAD.sub(r"\1\2…", path)


class RedactingFilter(logging.Filter):
    """Rewrites each record's message (and traceback text) through :func:`redact`."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):
            return True
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


def install() -> None:
    """Put a :class:`RedactingFilter` on every handler of the root logger and of the HTTP
    server's loggers (once each)."""
    for name in HANDLED_LOGGERS:
        for handler in logging.getLogger(name).handlers:
            if not any(isinstance(f, RedactingFilter) for f in handler.filters):
                handler.addFilter(RedactingFilter())
