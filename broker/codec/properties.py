"""MQTT 5 properties (section 2.2.2): a length, then identifier-value pairs."""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Any, Final

from broker.codec import wire
from broker.codec.errors import MalformedPacket, ProtocolError
from broker.codec.packets import Properties


class _Kind(enum.Enum):
    BYTE = 1
    U16 = 2
    U32 = 4
    VARINT = 5
    STRING = 6
    BINARY = 7
    PAIR = 8


_TABLE: Final[dict[int, tuple[str, _Kind]]] = {
    0x01: ("payload_format_indicator", _Kind.BYTE),
    0x02: ("message_expiry_interval", _Kind.U32),
    0x03: ("content_type", _Kind.STRING),
    0x08: ("response_topic", _Kind.STRING),
    0x09: ("correlation_data", _Kind.BINARY),
    0x0B: ("subscription_identifiers", _Kind.VARINT),
    0x11: ("session_expiry_interval", _Kind.U32),
    0x12: ("assigned_client_identifier", _Kind.STRING),
    0x13: ("server_keep_alive", _Kind.U16),
    0x15: ("authentication_method", _Kind.STRING),
    0x16: ("authentication_data", _Kind.BINARY),
    0x17: ("request_problem_information", _Kind.BYTE),
    0x18: ("will_delay_interval", _Kind.U32),
    0x19: ("request_response_information", _Kind.BYTE),
    0x1A: ("response_information", _Kind.STRING),
    0x1C: ("server_reference", _Kind.STRING),
    0x1F: ("reason_string", _Kind.STRING),
    0x21: ("receive_maximum", _Kind.U16),
    0x22: ("topic_alias_maximum", _Kind.U16),
    0x23: ("topic_alias", _Kind.U16),
    0x24: ("maximum_qos", _Kind.BYTE),
    0x25: ("retain_available", _Kind.BYTE),
    0x26: ("user_properties", _Kind.PAIR),
    0x27: ("maximum_packet_size", _Kind.U32),
    0x28: ("wildcard_subscription_available", _Kind.BYTE),
    0x29: ("subscription_identifier_available", _Kind.BYTE),
    0x2A: ("shared_subscription_available", _Kind.BYTE),
}
_REPEATABLE: Final = frozenset({"subscription_identifiers", "user_properties"})
_READ: Final[dict[_Kind, Callable[[wire.Cursor], Any]]] = {
    _Kind.BYTE: wire.Cursor.u8,
    _Kind.U16: wire.Cursor.u16,
    _Kind.U32: wire.Cursor.u32,
    _Kind.VARINT: wire.Cursor.varint,
    _Kind.STRING: wire.Cursor.string,
    _Kind.BINARY: wire.Cursor.binary,
    _Kind.PAIR: lambda c: (c.string(), c.string()),
}
_EMPTY: Final = Properties()


def read(cursor: wire.Cursor) -> Properties:
    length = cursor.varint()
    end = cursor.pos + length
    if end > len(cursor.data):
        msg = f"the properties claim {length} bytes; the packet ends before"
        raise MalformedPacket(msg)
    props = Properties()
    seen: set[int] = set()
    inner = wire.Cursor(cursor.data[:end], cursor.pos)
    while inner.pos < end:
        ident = inner.varint()
        entry = _TABLE.get(ident)
        if entry is None:
            msg = f"unknown property identifier 0x{ident:02x}"
            raise MalformedPacket(msg)
        name, kind = entry
        value = _READ[kind](inner)
        if name in _REPEATABLE:
            getattr(props, name).append(value)
        elif ident in seen:
            msg = f"property {name} appears twice"
            raise ProtocolError(msg)
        else:
            setattr(props, name, value)
        seen.add(ident)
    cursor.pos = end
    return props


def _value(kind: _Kind, value: Any) -> bytes:
    match kind:
        case _Kind.BYTE:
            return bytes((value,))
        case _Kind.U16:
            return int(value).to_bytes(2, "big")
        case _Kind.U32:
            return int(value).to_bytes(4, "big")
        case _Kind.VARINT:
            return wire.varint(value)
        case _Kind.STRING:
            return wire.string(value)
        case _Kind.BINARY:
            return wire.binary(value)
        case _Kind.PAIR:
            return wire.string(value[0]) + wire.string(value[1])


def write(props: Properties) -> bytes:
    if props == _EMPTY:
        return b"\x00"
    out = bytearray()
    for ident, (name, kind) in _TABLE.items():
        value = getattr(props, name)
        if name in _REPEATABLE:
            for item in value:
                out += wire.varint(ident) + _value(kind, item)
        elif value is not None:
            out += wire.varint(ident) + _value(kind, value)
    return wire.varint(len(out)) + bytes(out)
