"""Real local endpoints for notification tests: an HTTP receiver in a thread and an aiosmtpd SMTP server."""

from __future__ import annotations

import email
import email.policy
import socket
import threading
import time
from dataclasses import dataclass, field
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from aiosmtpd.controller import Controller


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """An HTTP server on 127.0.0.1 and a free port; answers `fail_first` requests with `fail_status`, then 200."""

    fail_first: int = 0
    fail_status: int = 503
    # Seconds each request takes to answer (a slow endpoint); `started` is set when one arrives.
    delay_s: float = 0.0
    started: threading.Event = field(default_factory=threading.Event)
    requests: list[Received] = field(default_factory=list)
    accepted: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                receiver.started.set()
                if receiver.delay_s:
                    time.sleep(receiver.delay_s)
                length = int(self.headers.get("Content-Length", "0"))
                got = Received(self.path, {k.lower(): v for k, v in self.headers.items()}, self.rfile.read(length))
                with receiver.lock:
                    receiver.requests.append(got)
                    failing = len(receiver.requests) <= receiver.fail_first
                    if not failing:
                        receiver.accepted.append(got)
                self.send_response(receiver.fail_status if failing else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


class _Inbox:
    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd's hook name
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        self.messages.append(message)  # type: ignore[arg-type]
        return "250 OK"


class SmtpServer:
    """aiosmtpd on 127.0.0.1 and a free port, in its own thread; `messages` holds what arrived."""

    def __init__(self) -> None:
        self.inbox = _Inbox()
        # aiosmtpd checks it started by connecting to its port, so it needs a real one, not 0.
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            free = probe.getsockname()[1]
        self.controller = Controller(self.inbox, hostname="127.0.0.1", port=free)

    def start(self) -> SmtpServer:
        self.controller.start()
        return self

    @property
    def port(self) -> int:
        return int(self.controller.port)

    @property
    def messages(self) -> list[EmailMessage]:
        return self.inbox.messages

    def stop(self) -> None:
        self.controller.stop()
