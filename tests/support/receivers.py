"""Real notification receivers for tests: an HTTP webhook server and an SMTP server
(aiosmtpd), both on 127.0.0.1 with a free port, collecting what they receive."""

from __future__ import annotations

import email
import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from aiosmtpd.controller import Controller


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Webhook:
    """JSON bodies POSTed to ``url_path`` (apprise ``json://127.0.0.1:PORT/path``)."""

    port: int
    received: list[dict[str, Any]] = field(default_factory=list)

    def apprise_url(self, path: str = "hook") -> str:
        """The apprise URL that posts JSON here."""
        return f"json://127.0.0.1:{self.port}/{path}"

    def wait(self, count: int = 1, timeout: float = 10) -> list[dict[str, Any]]:
        """Wait until ``count`` bodies arrived; return them all."""
        deadline = time.monotonic() + timeout
        while len(self.received) < count:
            assert time.monotonic() < deadline, f"webhook got {len(self.received)} of {count}"
            time.sleep(0.02)
        return self.received


@contextmanager
def webhook() -> Iterator[Webhook]:
    """A running webhook receiver, stopped at the end of the block."""
    hook = Webhook(0)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's hook name
            length = int(self.headers.get("Content-Length", "0"))
            body = json.loads(self.rfile.read(length) or b"{}")
            hook.received.append({"path": self.path, **body})
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    hook.port = int(server.server_address[1])
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield hook
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@dataclass
class Mailbox:
    """Messages an SMTP server accepted."""

    port: int
    messages: list[Message] = field(default_factory=list)

    def apprise_url(self, to: str = "ops@example.com") -> str:
        """apprise ``mailto://`` for this server: plain SMTP, no login."""
        return f"mailto://127.0.0.1:{self.port}?from=pgvault@example.com&to={to}&mode=insecure"

    def wait(self, count: int = 1, timeout: float = 10) -> list[Message]:
        """Wait until ``count`` messages arrived; return them all."""
        deadline = time.monotonic() + timeout
        while len(self.messages) < count:
            assert time.monotonic() < deadline, f"mailbox got {len(self.messages)} of {count}"
            time.sleep(0.02)
        return self.messages


def text_of(message: Message) -> str:
    """The text/plain part of a message, decoded."""
    for part in message.walk():
        if part.get_content_type() == "text/plain":
            payload = part.get_payload(decode=True)
            assert isinstance(payload, bytes)
            return payload.decode(part.get_content_charset() or "utf-8")
    raise AssertionError("no text/plain part")


@contextmanager
def smtp_server() -> Iterator[Mailbox]:
    """A running aiosmtpd server collecting messages, stopped at the end of the block."""
    box = Mailbox(free_port())

    class Handler:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
            box.messages.append(email.message_from_bytes(envelope.content))
            return "250 OK"

    controller = Controller(Handler(), hostname="127.0.0.1", port=box.port)
    controller.start()
    try:
        yield box
    finally:
        controller.stop()
