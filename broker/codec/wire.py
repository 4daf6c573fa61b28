"""The data types of MQTT (section 1.5): integers, variable byte integers, strings, binary data."""

from __future__ import annotations

from typing import Final

from broker.codec.errors import MalformedPacket

# The largest value a variable byte integer holds (four bytes), hence the largest remaining length.
VARINT_MAX: Final = 268_435_455


class Cursor:
    """Reads MQTT data types from one packet body; running short is a `MalformedPacket`."""

    __slots__ = ("data", "pos")

    def __init__(self, data: bytes, pos: int = 0) -> None:
        self.data = data
        self.pos = pos

    def remaining(self) -> int:
        return len(self.data) - self.pos

    def take(self, n: int) -> bytes:
        end = self.pos + n
        if end > len(self.data):
            msg = f"the packet ends {end - len(self.data)} bytes short"
            raise MalformedPacket(msg)
        chunk = self.data[self.pos : end]
        self.pos = end
        return chunk

    def rest(self) -> bytes:
        chunk = self.data[self.pos :]
        self.pos = len(self.data)
        return chunk

    def u8(self) -> int:
        if self.pos >= len(self.data):
            msg = "the packet ends 1 byte short"
            raise MalformedPacket(msg)
        value = self.data[self.pos]
        self.pos += 1
        return value

    def u16(self) -> int:
        return int.from_bytes(self.take(2), "big")

    def u32(self) -> int:
        return int.from_bytes(self.take(4), "big")

    def varint(self) -> int:
        value, shift = 0, 0
        for _ in range(4):
            byte = self.u8()
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return value
            shift += 7
        msg = "a variable byte integer is longer than four bytes"
        raise MalformedPacket(msg)

    def binary(self) -> bytes:
        return self.take(self.u16())

    def string(self) -> str:
        raw = self.binary()
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            msg = f"a string is not well-formed UTF-8 ({exc.reason})"
            raise MalformedPacket(msg) from None
        if "\x00" in text:
            # MQTT-1.5.4-2: U+0000 is never allowed in a string.
            msg = "a string contains the null character U+0000"
            raise MalformedPacket(msg)
        return text


def varint(value: int) -> bytes:
    if not 0 <= value <= VARINT_MAX:
        msg = f"{value} does not fit a variable byte integer"
        raise ValueError(msg)
    out = bytearray()
    while True:
        value, digit = divmod(value, 128)
        out.append(digit | (0x80 if value else 0))
        if not value:
            return bytes(out)


def binary(value: bytes) -> bytes:
    if len(value) > 0xFFFF:
        msg = f"binary data of {len(value)} bytes is over the 65535 an MQTT field holds"
        raise ValueError(msg)
    return len(value).to_bytes(2, "big") + value


def string(value: str) -> bytes:
    return binary(value.encode("utf-8"))
