"""The load client's MQTT 3.1.1 encoding and its packet parser."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from firmware_sim.load.mqtt import MqttProtocol, connect_packet, publish_packet, topic_bytes


class _Transport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.written: list[bytes] = []
        self.closed = False

    def write(self, data: Any) -> None:
        self.written.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closed

    def abort(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default


def test_connect_packet_carries_client_id_username_and_keepalive() -> None:
    """CONNECT names MQTT level 4, a clean session with a user name, and the keepalive."""
    packet = connect_packet("veh-1", username="veh-1", keepalive_s=60)
    assert packet[0] == 0x10
    assert packet[1] == len(packet) - 2
    assert packet[2:8] == b"\x00\x04MQTT"
    assert packet[8] == 4
    assert packet[9] == 0x82
    assert packet[10:12] == b"\x00\x3c"
    assert packet.endswith(b"\x00\x05veh-1\x00\x05veh-1")


def test_publish_qos1_has_packet_id_and_long_remaining_length() -> None:
    """A QoS 1 PUBLISH carries its packet id; a 200-byte body needs two length bytes."""
    payload = b"x" * 200
    packet = publish_packet(topic_bytes("a/b"), payload, 1, 7)
    assert packet[0] == 0x32
    body_len = 5 + 2 + 200
    assert packet[1:3] == bytes((body_len % 128 | 0x80, body_len // 128))
    assert packet[3:8] == b"\x00\x03a/b"
    assert packet[8:10] == b"\x00\x07"
    assert packet.endswith(payload)


def test_publish_qos0_has_no_packet_id() -> None:
    """A QoS 0 PUBLISH is header, topic and payload only."""
    assert publish_packet(topic_bytes("t"), b"hi", 0, 0) == b"\x30\x05\x00\x01thi"


def test_parser_handles_packets_split_and_joined_across_reads() -> None:
    """PUBACKs and a QoS 1 PUBLISH split over reads are each handled once, and the PUBLISH is acknowledged."""
    acks: list[int] = []
    messages: list[tuple[str, bytes]] = []
    proto = MqttProtocol(on_ack=acks.append, on_message=lambda t, p: messages.append((t, p)))
    transport = _Transport()
    proto.connection_made(transport)
    incoming = publish_packet(topic_bytes("vehicles/v/twin/delta"), b'{"version":1}', 1, 9)
    stream = b"\x40\x02\x00\x01" + b"\x40\x02\x00\x02" + incoming
    for i in range(0, len(stream), 3):
        proto.data_received(stream[i : i + 3])
    assert acks == [1, 2]
    assert messages == [("vehicles/v/twin/delta", b'{"version":1}')]
    assert transport.written == [b"\x40\x02\x00\x09"]


@pytest.mark.parametrize(("code", "reason"), [(5, "not authorised"), (4, "bad user name or password")])
async def test_refused_connack_fails_the_handshake(code: int, reason: str) -> None:
    """A CONNACK with a refusal code makes the handshake raise with the reason."""
    proto = MqttProtocol()
    proto.connection_made(_Transport())
    handshake = asyncio.ensure_future(proto.handshake("c", username=None, keepalive_s=10, timeout_s=1))
    await asyncio.sleep(0)
    proto.data_received(bytes((0x20, 2, 0, code)))
    with pytest.raises(Exception, match=reason):
        await handshake
