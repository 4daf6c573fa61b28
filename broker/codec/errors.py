"""What the codec raises: one error type per cause a server must answer differently."""

from __future__ import annotations

from broker.codec.reasons import Reason


class CodecError(Exception):
    """A packet the codec cannot take; `reason` is the MQTT 5 reason code a server answers with."""

    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


class MalformedPacket(CodecError):
    """The bytes do not form a packet of the specification (a server closes the connection)."""

    def __init__(self, detail: str) -> None:
        super().__init__(Reason.MALFORMED_PACKET, detail)


class ProtocolError(CodecError):
    """A well-formed packet the specification forbids here (duplicate property, empty SUBSCRIBE, ...)."""

    def __init__(self, detail: str) -> None:
        super().__init__(Reason.PROTOCOL_ERROR, detail)


class UnsupportedProtocol(CodecError):
    """A CONNECT for a protocol name or level this codec does not speak (CONNACK 1 / 0x84)."""

    def __init__(self, name: str, level: int) -> None:
        super().__init__(Reason.UNSUPPORTED_PROTOCOL_VERSION, f"protocol {name!r} level {level} is not supported")
        self.level = level


class PacketTooLarge(CodecError):
    """A packet whose remaining length is over the receiver's maximum packet size."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(Reason.PACKET_TOO_LARGE, f"a packet of {size} bytes is over the limit of {limit} bytes")
        self.size = size
        self.limit = limit
