"""Bytes to packets. Every defect of the input is a `CodecError`; nothing else escapes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from broker.codec import properties
from broker.codec.errors import CodecError, MalformedPacket, ProtocolError, UnsupportedProtocol
from broker.codec.packets import (
    Ack,
    Auth,
    Connack,
    Connect,
    Disconnect,
    Packet,
    PacketType,
    PingReq,
    PingResp,
    Properties,
    Publish,
    RetainHandling,
    Suback,
    Subscribe,
    Subscription,
    Unsuback,
    Unsubscribe,
    Version,
    Will,
)
from broker.codec.reasons import Reason
from broker.codec.wire import Cursor

# Packets whose fixed-header flags are fixed by the specification (2.1.3): PUBREL,
# SUBSCRIBE and UNSUBSCRIBE carry 0b0010, everything else but PUBLISH 0b0000.
_FIXED_TWO: Final = (PacketType.PUBREL, PacketType.SUBSCRIBE, PacketType.UNSUBSCRIBE)
_FLAGS: Final = {t: (0x2 if t in _FIXED_TWO else 0) for t in PacketType}
_PROTOCOLS: Final = {("MQIsdp", 3): Version.V31, ("MQTT", 4): Version.V311, ("MQTT", 5): Version.V5}
_REASONS: Final = frozenset(int(r) for r in Reason)

_Decoder = Callable[[Cursor, int, Version], Packet]


def decode(first: int, body: bytes, version: Version) -> Packet:
    """One packet from its first byte and its body (everything after the remaining length).

    `version` is the connection's (from its CONNECT); a CONNECT carries its own.
    """
    try:
        kind = PacketType(first >> 4)
    except ValueError:
        msg = "packet type 0 is reserved"
        raise MalformedPacket(msg) from None
    flags = first & 0x0F
    if kind is not PacketType.PUBLISH and flags != _FLAGS[kind]:
        msg = f"{kind.name} with fixed-header flags 0x{flags:x}"
        raise MalformedPacket(msg)
    cursor = Cursor(body)
    try:
        packet = _DECODERS[kind](cursor, flags, version)
    except CodecError:
        raise
    except (ValueError, IndexError) as exc:
        # A value outside an enum (a reason code, a QoS), found while building the Struct.
        raise MalformedPacket(str(exc)) from None
    if cursor.remaining():
        msg = f"{kind.name} has {cursor.remaining()} bytes more than its fields"
        raise MalformedPacket(msg)
    return packet


def _props(cursor: Cursor, version: Version) -> Properties:
    return properties.read(cursor) if version is Version.V5 else Properties()


def _reason(code: int) -> Reason:
    if code not in _REASONS:
        msg = f"reason code 0x{code:02x} is not defined"
        raise MalformedPacket(msg)
    return Reason(code)


def _connect(cursor: Cursor, flags: int, _version: Version) -> Connect:
    name = cursor.string()
    level = cursor.u8()
    version = _PROTOCOLS.get((name, level))
    if version is None:
        if name not in ("MQTT", "MQIsdp"):
            msg = f"CONNECT for protocol {name!r}"
            raise MalformedPacket(msg)
        raise UnsupportedProtocol(name, level)
    connect_flags = cursor.u8()
    if connect_flags & 0x01:
        msg = "CONNECT with the reserved flag set"
        raise MalformedPacket(msg)
    will_flag = bool(connect_flags & 0x04)
    will_qos = (connect_flags >> 3) & 0x03
    will_retain = bool(connect_flags & 0x20)
    has_password = bool(connect_flags & 0x40)
    has_username = bool(connect_flags & 0x80)
    if will_qos == 3:
        msg = "CONNECT with will QoS 3"
        raise MalformedPacket(msg)
    if not will_flag and (will_qos or will_retain):
        msg = "CONNECT with will QoS or retain but no will"
        raise MalformedPacket(msg)
    if has_password and not has_username and version is not Version.V5:
        msg = "CONNECT with a password but no user name"
        raise MalformedPacket(msg)
    keep_alive = cursor.u16()
    props = _props(cursor, version)
    client_id = cursor.string()
    will = None
    if will_flag:
        will_props = _props(cursor, version)
        will_topic = cursor.string()
        will = Will(will_topic, cursor.binary(), will_qos, will_retain, will_props)
    username = cursor.string() if has_username else None
    password = cursor.binary() if has_password else None
    return Connect(client_id, version, bool(connect_flags & 0x02), keep_alive, username, password, will, props)


def _connack(cursor: Cursor, flags: int, version: Version) -> Connack:
    ack_flags = cursor.u8()
    if ack_flags & 0xFE:
        msg = "CONNACK with reserved flags set"
        raise MalformedPacket(msg)
    code = cursor.u8()
    if version is Version.V5:
        return Connack(_reason(code), bool(ack_flags), properties.read(cursor))
    # 3.1.1 return codes 1-5 are stored as the MQTT 5 reasons they stand for.
    v3 = {0: Reason.SUCCESS, 1: Reason.UNSUPPORTED_PROTOCOL_VERSION, 2: Reason.CLIENT_IDENTIFIER_NOT_VALID}
    v3 |= {3: Reason.SERVER_UNAVAILABLE, 4: Reason.BAD_USERNAME_OR_PASSWORD, 5: Reason.NOT_AUTHORIZED}
    if code not in v3:
        msg = f"CONNACK return code {code}"
        raise MalformedPacket(msg)
    return Connack(v3[code], bool(ack_flags))


def _publish(cursor: Cursor, flags: int, version: Version) -> Publish:
    qos = (flags >> 1) & 0x03
    if qos == 3:
        msg = "PUBLISH with QoS 3"
        raise MalformedPacket(msg)
    topic = cursor.string()
    packet_id = 0
    if qos:
        packet_id = cursor.u16()
        if packet_id == 0:
            msg = "PUBLISH with packet identifier 0"
            raise MalformedPacket(msg)
    props = _props(cursor, version)
    return Publish(topic, cursor.rest(), qos, bool(flags & 0x01), bool(flags & 0x08), packet_id, props)


def _packet_id(cursor: Cursor) -> int:
    packet_id = cursor.u16()
    if packet_id == 0:
        msg = "packet identifier 0"
        raise MalformedPacket(msg)
    return packet_id


def _ack(kind: PacketType) -> _Decoder:
    def read(cursor: Cursor, flags: int, version: Version) -> Ack:
        packet_id = _packet_id(cursor)
        if version is not Version.V5 or not cursor.remaining():
            return Ack(kind, packet_id)
        reason = _reason(cursor.u8())
        props = properties.read(cursor) if cursor.remaining() else Properties()
        return Ack(kind, packet_id, reason, props)

    return read


def _subscribe(cursor: Cursor, flags: int, version: Version) -> Subscribe:
    packet_id = _packet_id(cursor)
    props = _props(cursor, version)
    subscriptions: list[Subscription] = []
    while cursor.remaining():
        topic_filter = cursor.string()
        options = cursor.u8()
        qos = options & 0x03
        if qos == 3:
            msg = "SUBSCRIBE asks for QoS 3"
            raise MalformedPacket(msg)
        if version is Version.V5:
            handling = (options >> 4) & 0x03
            if options & 0xC0 or handling == 3:
                msg = f"SUBSCRIBE options 0x{options:02x} use reserved bits"
                raise MalformedPacket(msg)
            subscriptions.append(
                Subscription(topic_filter, qos, bool(options & 0x04), bool(options & 0x08), RetainHandling(handling))
            )
        else:
            if options & 0xFC:
                msg = f"SUBSCRIBE options 0x{options:02x} use reserved bits"
                raise MalformedPacket(msg)
            subscriptions.append(Subscription(topic_filter, qos))
    if not subscriptions:
        # MQTT-3.8.3-3: at least one filter.
        msg = "SUBSCRIBE without a topic filter"
        raise ProtocolError(msg)
    return Subscribe(packet_id, subscriptions, props)


def _suback(cursor: Cursor, flags: int, version: Version) -> Suback:
    packet_id = _packet_id(cursor)
    props = _props(cursor, version)
    codes = cursor.rest()
    if version is not Version.V5:
        return Suback(packet_id, [Reason.UNSPECIFIED_ERROR if c == 0x80 else _reason(c) for c in codes])
    return Suback(packet_id, [_reason(c) for c in codes], props)


def _unsubscribe(cursor: Cursor, flags: int, version: Version) -> Unsubscribe:
    packet_id = _packet_id(cursor)
    props = _props(cursor, version)
    filters: list[str] = []
    while cursor.remaining():
        filters.append(cursor.string())
    if not filters:
        msg = "UNSUBSCRIBE without a topic filter"
        raise ProtocolError(msg)
    return Unsubscribe(packet_id, filters, props)


def _unsuback(cursor: Cursor, flags: int, version: Version) -> Unsuback:
    packet_id = _packet_id(cursor)
    if version is not Version.V5:
        return Unsuback(packet_id)
    props = properties.read(cursor)
    return Unsuback(packet_id, [_reason(c) for c in cursor.rest()], props)


def _empty(make: type[PingReq] | type[PingResp]) -> _Decoder:
    def read(cursor: Cursor, flags: int, version: Version) -> PingReq | PingResp:
        return make()

    return read


def _disconnect(cursor: Cursor, flags: int, version: Version) -> Disconnect:
    if version is not Version.V5 or not cursor.remaining():
        return Disconnect()
    reason = _reason(cursor.u8())
    return Disconnect(reason, properties.read(cursor) if cursor.remaining() else Properties())


def _auth(cursor: Cursor, flags: int, version: Version) -> Auth:
    if version is not Version.V5:
        msg = "AUTH exists in MQTT 5 only"
        raise MalformedPacket(msg)
    if not cursor.remaining():
        return Auth()
    reason = _reason(cursor.u8())
    return Auth(reason, properties.read(cursor) if cursor.remaining() else Properties())


_DECODERS: Final[dict[PacketType, _Decoder]] = {
    PacketType.CONNECT: _connect,
    PacketType.CONNACK: _connack,
    PacketType.PUBLISH: _publish,
    PacketType.PUBACK: _ack(PacketType.PUBACK),
    PacketType.PUBREC: _ack(PacketType.PUBREC),
    PacketType.PUBREL: _ack(PacketType.PUBREL),
    PacketType.PUBCOMP: _ack(PacketType.PUBCOMP),
    PacketType.SUBSCRIBE: _subscribe,
    PacketType.SUBACK: _suback,
    PacketType.UNSUBSCRIBE: _unsubscribe,
    PacketType.UNSUBACK: _unsuback,
    PacketType.PINGREQ: _empty(PingReq),
    PacketType.PINGRESP: _empty(PingResp),
    PacketType.DISCONNECT: _disconnect,
    PacketType.AUTH: _auth,
}


def decode_properties(data: bytes) -> Properties:
    """MQTT 5 properties written by `encode_properties` (length first)."""
    cursor = Cursor(data)
    props = properties.read(cursor)
    if cursor.remaining():
        msg = f"{cursor.remaining()} bytes after the properties"
        raise MalformedPacket(msg)
    return props
