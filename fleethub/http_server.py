"""uvicorn, run as one task of the hub rather than as the owner of the process."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import socket
from collections.abc import Generator
from types import TracebackType
from typing import Any, Self

import uvicorn

from kernel import ConfigError


class HttpPortInUse(ConfigError):
    pass


class _EmbeddedServer(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        # The hub owns SIGINT/SIGTERM and stops every part in order; uvicorn must not.
        yield


def bind(host: str, port: int) -> socket.socket:
    """Bind the listening socket ourselves, so a taken port is an error we can explain."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return socket.create_server((host, port), family=family, backlog=1024)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise HttpPortInUse(
                f"HTTP port {port} is already in use on {host}; pick another with --http-port"
            ) from None
        raise ConfigError(f"cannot listen for HTTP on {host}:{port}: {exc.strerror}") from None


class HttpServer:
    """Serves an ASGI app on a pre-bound socket; an async context manager."""

    def __init__(self, app: Any, host: str, port: int) -> None:
        self._sock = bind(host, port)
        self.host = host
        self.port: int = self._sock.getsockname()[1]
        config = uvicorn.Config(
            app,
            log_config=None,
            access_log=False,
            lifespan="on",
            timeout_graceful_shutdown=5,
            server_header=False,
        )
        self._server = _EmbeddedServer(config)
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Self:
        self._task = asyncio.get_running_loop().create_task(self._server.serve(sockets=[self._sock]))
        while not self._server.started:
            if self._task.done():
                await self._task
                raise ConfigError("the HTTP server stopped while starting")
            await asyncio.sleep(0.01)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._server.should_exit = True
        if self._task is not None:
            await self._task
        self._sock.close()

    @property
    def task(self) -> asyncio.Task[None] | None:
        return self._task
