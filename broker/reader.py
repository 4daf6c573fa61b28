"""Bounds on what one connection can make amqtt buffer.

amqtt reads each client's packets as fast as they arrive and queues the PUBLISHes for
routing without limit. Two bounds keep memory flat: no single read larger than the
payload limit allows, and no reading past a full routing backlog. The second one is
what turns a slow ingest pipeline into TCP backpressure on the publisher.
"""

from __future__ import annotations

import asyncio
from typing import Any

from amqtt.adapters import ReaderAdapter

# The longest string MQTT can carry (a topic, a client id), with its length prefix:
# the bound never cuts a packet that is legal apart from its payload size.
_LONGEST_STRING = 65_535 + 2

# PUBLISHes read but not yet handed to ingest, per connection, before reading pauses.
BACKLOG_LIMIT = 32


class PacketTooLarge(Exception):
    """A packet body would exceed the read bound; the connection cannot continue."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"refusing to read {size} bytes at once (bound is {limit})")
        self.size = size


def read_bound(max_payload_bytes: int) -> int:
    """Reads up to this size are allowed: twice the payload limit, so that a payload a
    little too large is still read and refused politely, and never less than a string."""
    return max(2 * max_payload_bytes, _LONGEST_STRING)


class Backlog(asyncio.Queue[Any]):
    """The per-session queue of what the reader took (PUBLISHes, SUBSCRIBEs, the end), able to say when it has room.

    It never refuses an item (amqtt would drop QoS 0 messages on a full queue); the
    limit only pauses the reader.
    """

    def __init__(self, limit: int = BACKLOG_LIMIT) -> None:
        super().__init__()
        self._limit = limit
        self._room = asyncio.Event()
        self._room.set()

    def get_nowait(self) -> Any:
        # `get` ends in `get_nowait`, so every way out of the queue passes here.
        item = super().get_nowait()
        if self.qsize() < self._limit:
            self._room.set()
        return item

    async def wait_for_room(self) -> None:
        while self.qsize() >= self._limit:
            self._room.clear()
            await self._room.wait()


class BoundedReader(ReaderAdapter):  # type: ignore[misc]  # amqtt ships no type information
    """Refuses oversized reads and pauses while the connection's backlog is full.

    amqtt reads a PUBLISH payload with one read of its declared length, so without the
    size bound a client could make the broker hold up to 256 MiB before any size check
    runs; the refused read raises, and amqtt's reader loop closes the connection.

    The pause applies only to reads inside a packet body (two bytes or more): amqtt
    reads fixed headers one byte at a time under the keep-alive timeout, and a client
    must not be cut off as silent because the hub made it wait.
    """

    def __init__(self, inner: ReaderAdapter, limit: int) -> None:
        self._inner = inner
        self._limit = limit
        self._backlog: Backlog | None = None
        self.refused: PacketTooLarge | None = None

    def pause_while_full(self, backlog: Backlog) -> None:
        self._backlog = backlog

    async def read(self, n: int = -1) -> bytes:
        if n > self._limit:
            self.refused = PacketTooLarge(n, self._limit)
            raise self.refused
        if n > 1 and self._backlog is not None:
            await self._backlog.wait_for_room()
        data: bytes = await self._inner.read(n)
        return data

    def feed_eof(self) -> None:
        self._inner.feed_eof()
