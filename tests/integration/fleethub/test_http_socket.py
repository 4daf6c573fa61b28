"""The HTTP listener's sockets: Nagle's algorithm off on every accepted connection."""

import asyncio
import socket

from fleethub.http_server import bind


async def test_accepted_http_connections_send_without_delay() -> None:
    """Connections accepted on the hub's HTTP socket have TCP_NODELAY, so a response never waits for an ACK."""
    listener = bind("127.0.0.1", 0)
    seen: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    class Probe(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            sock = transport.get_extra_info("socket")
            seen.set_result(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            transport.close()

    server = await asyncio.get_running_loop().create_server(Probe, sock=listener)
    _, writer = await asyncio.open_connection("127.0.0.1", listener.getsockname()[1])
    try:
        assert await asyncio.wait_for(seen, 5) != 0
    finally:
        writer.close()
        server.close()
        await server.wait_closed()
