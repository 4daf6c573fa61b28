"""A bound on how much one packet may make amqtt buffer."""

from __future__ import annotations

from amqtt.adapters import ReaderAdapter

# The longest string MQTT can carry (a topic, a client id), with its length prefix:
# the bound never cuts a packet that is legal apart from its payload size.
_LONGEST_STRING = 65_535 + 2


class PacketTooLarge(Exception):
    """A packet body would exceed the read bound; the connection cannot continue."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"refusing to read {size} bytes at once (bound is {limit})")
        self.size = size


def read_bound(max_payload_bytes: int) -> int:
    """Reads up to this size are allowed: twice the payload limit, so that a payload a
    little too large is still read and refused politely, and never less than a string."""
    return max(2 * max_payload_bytes, _LONGEST_STRING)


class BoundedReader(ReaderAdapter):  # type: ignore[misc]  # amqtt ships no type information
    """Refuses a single read larger than `limit` before buffering any of it.

    amqtt reads a PUBLISH payload with one read of its declared length, so without this
    a client could make the broker hold up to 256 MiB per connection before any size
    check runs. The refused read raises, and amqtt's reader loop closes the connection.
    """

    def __init__(self, inner: ReaderAdapter, limit: int) -> None:
        self._inner = inner
        self._limit = limit
        self.refused: PacketTooLarge | None = None

    async def read(self, n: int = -1) -> bytes:
        if n > self._limit:
            self.refused = PacketTooLarge(n, self._limit)
            raise self.refused
        data: bytes = await self._inner.read(n)
        return data

    def feed_eof(self) -> None:
        self._inner.feed_eof()
