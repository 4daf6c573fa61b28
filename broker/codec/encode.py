"""Packets to bytes, for the version a connection speaks."""

from __future__ import annotations

from broker.codec import properties, wire
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
    Suback,
    Subscribe,
    Unsuback,
    Unsubscribe,
    Version,
)
from broker.codec.reasons import Reason, v3_connack_code, v3_suback_code

_EMPTY = Properties()


def frame(kind: PacketType, flags: int, body: bytes) -> bytes:
    return bytes(((kind << 4) | flags,)) + wire.varint(len(body)) + body


def encode(packet: Packet, version: Version) -> bytes:
    v5 = version is Version.V5
    match packet:
        case Publish():
            return encode_publish(packet, version)
        case Ack(kind=kind, packet_id=packet_id, reason=reason, properties=props):
            body = packet_id.to_bytes(2, "big")
            if v5 and (props != _EMPTY):
                body += bytes((reason,)) + properties.write(props)
            elif v5 and reason is not Reason.SUCCESS:
                body += bytes((reason,))
            return frame(kind, 0x2 if kind is PacketType.PUBREL else 0, body)
        case Connack(reason=reason, session_present=present, properties=props):
            if v5:
                return frame(PacketType.CONNACK, 0, bytes((int(present), reason)) + properties.write(props))
            return frame(PacketType.CONNACK, 0, bytes((int(present), v3_connack_code(reason))))
        case Connect():
            return _connect(packet)
        case Subscribe(packet_id=packet_id, subscriptions=subscriptions, properties=props):
            out = bytearray(packet_id.to_bytes(2, "big"))
            if v5:
                out += properties.write(props)
            for sub in subscriptions:
                options = sub.qos
                if v5:
                    options |= (sub.no_local << 2) | (sub.retain_as_published << 3) | (sub.retain_handling << 4)
                out += wire.string(sub.topic_filter) + bytes((options,))
            return frame(PacketType.SUBSCRIBE, 0x2, bytes(out))
        case Suback(packet_id=packet_id, reasons=reasons, properties=props):
            head = packet_id.to_bytes(2, "big") + (properties.write(props) if v5 else b"")
            codes = bytes(reasons) if v5 else bytes(v3_suback_code(r) for r in reasons)
            return frame(PacketType.SUBACK, 0, head + codes)
        case Unsubscribe(packet_id=packet_id, topic_filters=filters, properties=props):
            body = packet_id.to_bytes(2, "big") + (properties.write(props) if v5 else b"")
            return frame(PacketType.UNSUBSCRIBE, 0x2, body + b"".join(wire.string(f) for f in filters))
        case Unsuback(packet_id=packet_id, reasons=reasons, properties=props):
            body = packet_id.to_bytes(2, "big")
            if v5:
                body += properties.write(props) + bytes(reasons)
            return frame(PacketType.UNSUBACK, 0, body)
        case PingReq():
            return b"\xc0\x00"
        case PingResp():
            return b"\xd0\x00"
        case Disconnect(reason=reason, properties=props):
            if not v5 or (reason is Reason.SUCCESS and props == _EMPTY):
                return b"\xe0\x00"
            return frame(PacketType.DISCONNECT, 0, bytes((reason,)) + properties.write(props))
        case Auth(reason=reason, properties=props):
            return frame(PacketType.AUTH, 0, bytes((reason,)) + properties.write(props))
    msg = f"cannot encode {packet!r}"
    raise TypeError(msg)


def encode_publish(packet: Publish, version: Version) -> bytes:
    body = wire.string(packet.topic)
    if packet.qos:
        body += packet.packet_id.to_bytes(2, "big")
    if version is Version.V5:
        body += properties.write(packet.properties)
    flags = (packet.dup << 3) | (packet.qos << 1) | packet.retain
    return frame(PacketType.PUBLISH, flags, body + packet.payload)


def _connect(packet: Connect) -> bytes:
    v5 = packet.version is Version.V5
    name = "MQIsdp" if packet.version is Version.V31 else "MQTT"
    flags = (packet.clean_start << 1) | ((packet.username is not None) << 7) | ((packet.password is not None) << 6)
    will = packet.will
    if will is not None:
        flags |= 0x04 | (will.qos << 3) | (will.retain << 5)
    body = bytearray(wire.string(name) + bytes((packet.version, flags)) + packet.keep_alive.to_bytes(2, "big"))
    if v5:
        body += properties.write(packet.properties)
    body += wire.string(packet.client_id)
    if will is not None:
        if v5:
            body += properties.write(will.properties)
        body += wire.string(will.topic) + wire.binary(will.payload)
    if packet.username is not None:
        body += wire.string(packet.username)
    if packet.password is not None:
        body += wire.binary(packet.password)
    return frame(PacketType.CONNECT, 0, bytes(body))


def encode_properties(props: Properties) -> bytes:
    return properties.write(props)
