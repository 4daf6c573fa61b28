"""A bare MQTT client for any protocol version, built on the broker's codec for the byte work.

For behaviour paho cannot show (reason codes, properties, exact packets); the same
behaviours are also checked with paho and the mosquitto clients, which share no code
with the broker.
"""

from __future__ import annotations

import asyncio
import contextlib

from broker import codec
from broker.codec import Connack, Connect, Packet, Properties, Version


class WireClient:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, version: Version) -> None:
        self.reader = reader
        self.writer = writer
        self.version = version

    @classmethod
    async def open(cls, port: int, version: Version = Version.V5) -> WireClient:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer, version)

    @classmethod
    async def connect(
        cls,
        port: int,
        client_id: str,
        *,
        version: Version = Version.V5,
        clean: bool = True,
        keep_alive: int = 30,
        properties: Properties | None = None,
        username: str | None = None,
        password: bytes | None = None,
        will: codec.Will | None = None,
    ) -> tuple[WireClient, Connack]:
        client = await cls.open(port, version)
        packet = Connect(client_id, version, clean, keep_alive, username, password, will, properties or Properties())
        await client.send(packet)
        connack = await client.recv()
        assert isinstance(connack, Connack), connack
        return client, connack

    async def send(self, packet: Packet) -> None:
        self.writer.write(codec.encode(packet, self.version))
        await self.writer.drain()

    async def send_raw(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def recv(self, within: float = 5.0) -> Packet:
        async with asyncio.timeout(within):
            first = (await self.reader.readexactly(1))[0]
            length, shift = 0, 0
            while True:
                byte = (await self.reader.readexactly(1))[0]
                length |= (byte & 0x7F) << shift
                if not byte & 0x80:
                    break
                shift += 7
            body = await self.reader.readexactly(length) if length else b""
        return codec.decode(first, body, self.version)

    async def recv_all(self, within: float) -> list[Packet]:
        """Every packet that arrives within `within` seconds of quiet."""
        packets: list[Packet] = []
        with contextlib.suppress(TimeoutError, asyncio.IncompleteReadError):
            while True:
                packets.append(await self.recv(within))
        return packets

    async def closed(self, within: float = 5.0) -> bool:
        """True once the broker has closed the connection (anything still sent before is skipped)."""
        async with asyncio.timeout(within):
            while True:
                data = await self.reader.read(65536)
                if not data:
                    return True

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()
