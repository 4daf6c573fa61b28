"""One client's byte stream, whatever carries it: TCP, TLS or WebSocket frames.

The protocol loop reads exact byte counts and writes whole packets; each `write` is
one packet, so packets written from different places never interleave.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, Final, Protocol

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

# Bytes read at a time when throwing away the rest of an oversized packet.
_DISCARD_CHUNK: Final = 65_536


class LinkClosed(Exception):
    """The peer closed the connection, or it broke."""


class Link(Protocol):
    host: str
    port: int

    @property
    def ssl_object(self) -> Any: ...

    async def read(self, n: int) -> bytes:
        """Exactly `n` bytes; `LinkClosed` when the stream ends first."""
        ...

    async def discard(self, n: int) -> None:
        """Read and drop `n` bytes without holding them."""
        ...

    def write(self, data: bytes) -> None: ...

    async def drain(self) -> None:
        """Wait until what was written is handed to the OS (or the link is closed)."""
        ...

    def buffered(self) -> int:
        """Bytes written but not yet sent."""
        ...

    def close(self) -> None: ...

    async def wait_closed(self) -> None: ...


class StreamLink:
    """TCP or TLS, over asyncio streams."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        peer = writer.get_extra_info("peername") or ("", 0)
        self.host = str(peer[0])
        self.port = int(peer[1])

    @property
    def ssl_object(self) -> Any:
        return self._writer.get_extra_info("ssl_object")

    async def read(self, n: int) -> bytes:
        try:
            return await self._reader.readexactly(n)
        except (asyncio.IncompleteReadError, ConnectionError, OSError) as exc:
            raise LinkClosed from exc

    async def discard(self, n: int) -> None:
        while n > 0:
            chunk = await self.read(min(n, _DISCARD_CHUNK))
            n -= len(chunk)

    def write(self, data: bytes) -> None:
        if not self._writer.is_closing():
            self._writer.write(data)

    async def drain(self) -> None:
        with contextlib.suppress(ConnectionError, OSError, RuntimeError):
            await self._writer.drain()

    def buffered(self) -> int:
        return self._writer.transport.get_write_buffer_size()

    def close(self) -> None:
        self._writer.close()

    async def wait_closed(self) -> None:
        with contextlib.suppress(ConnectionError, OSError, asyncio.CancelledError):
            await self._writer.wait_closed()


class WebSocketLink:
    """MQTT over WebSocket (binary frames, subprotocol `mqtt`); frames need not align with packets."""

    def __init__(self, connection: ServerConnection) -> None:
        self._ws = connection
        self._inbox = bytearray()
        self._outbox: list[bytes] = []
        self._outbox_bytes = 0
        self._pending = asyncio.Event()
        self._sent = asyncio.Event()
        self._sent.set()
        self._closed = False
        self._closing: asyncio.Future[None] | None = None
        peer = connection.remote_address or ("", 0)
        self.host = str(peer[0])
        self.port = int(peer[1])
        self._pump = asyncio.create_task(self._send_loop())

    @property
    def ssl_object(self) -> Any:
        return None

    async def read(self, n: int) -> bytes:
        while len(self._inbox) < n:
            try:
                frame = await self._ws.recv()
            except ConnectionClosed as exc:
                raise LinkClosed from exc
            self._inbox += frame if isinstance(frame, bytes) else frame.encode()
        data = bytes(self._inbox[:n])
        del self._inbox[:n]
        return data

    async def discard(self, n: int) -> None:
        while n > 0:
            chunk = await self.read(min(n, _DISCARD_CHUNK))
            n -= len(chunk)

    def write(self, data: bytes) -> None:
        if self._closed:
            return
        self._outbox.append(data)
        self._outbox_bytes += len(data)
        self._sent.clear()
        self._pending.set()

    async def drain(self) -> None:
        await self._sent.wait()

    def buffered(self) -> int:
        return self._outbox_bytes

    async def _send_loop(self) -> None:
        try:
            while True:
                await self._pending.wait()
                self._pending.clear()
                batch, self._outbox, self._outbox_bytes = self._outbox, [], 0
                if batch:
                    await self._ws.send(b"".join(batch))
                if not self._outbox:
                    self._sent.set()
        except ConnectionClosed:
            pass
        finally:
            self._closed = True
            self._sent.set()

    def close(self) -> None:
        self._closed = True
        self._sent.set()
        self._pump.cancel()
        # The close handshake runs in websockets' own task; `wait_closed` waits for it.
        self._closing = asyncio.ensure_future(self._ws.close())

    async def wait_closed(self) -> None:
        with contextlib.suppress(ConnectionClosed, asyncio.CancelledError, OSError):
            await self._pump
        if self._closing is not None:
            with contextlib.suppress(ConnectionClosed, OSError):
                await self._closing
        with contextlib.suppress(ConnectionClosed, OSError):
            await self._ws.wait_closed()
