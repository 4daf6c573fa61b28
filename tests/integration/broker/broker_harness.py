"""Helpers for driving the real embedded broker: a recording sink and MQTT clients."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Awaitable, Callable
from typing import Any, Literal

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from twin.inbound import Inbound, MessageKind

MAX_PAYLOAD = 1024


async def eventually(predicate: Callable[[], bool], within: float = 5.0) -> None:
    """Wait until `predicate()` holds, failing the test after `within` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not predicate():
        if loop.time() > deadline:
            pytest.fail(f"condition not met within {within} s")
        await asyncio.sleep(0.01)


class RecordingSink:
    """An InboundSink that keeps every item; the test resolves acks itself.

    `hold(vid)` makes `submit` wait for that vehicle, as a full pipeline would.
    """

    def __init__(self) -> None:
        self.items: list[Inbound] = []
        self._held: dict[str, asyncio.Event] = {}

    async def submit(self, item: Inbound) -> None:
        gate = self._held.get(item.vehicle_id)
        if gate is not None:
            await gate.wait()
        self.items.append(item)

    def try_submit(self, item: Inbound) -> bool:
        if item.vehicle_id in self._held:
            return False
        self.items.append(item)
        return True

    def hold(self, vehicle_id: str) -> None:
        self._held[vehicle_id] = asyncio.Event()

    def release(self, vehicle_id: str) -> None:
        self._held.pop(vehicle_id).set()

    def of(self, vehicle_id: str, kind: MessageKind | None = None) -> list[Inbound]:
        return [i for i in self.items if i.vehicle_id == vehicle_id and (kind is None or i.kind is kind)]

    async def wait_for(self, vehicle_id: str, kind: MessageKind, count: int = 1) -> list[Inbound]:
        await eventually(lambda: len(self.of(vehicle_id, kind)) >= count)
        return self.of(vehicle_id, kind)


class Client:
    """A paho 2.x client whose callbacks record what the broker sent back."""

    def __init__(
        self,
        client_id: str,
        username: str | None = None,
        transport: Literal["tcp", "websockets"] = "tcp",
        *,
        clean_session: bool = True,
        manual_ack: bool = False,
    ) -> None:
        self.client_id = client_id
        self.paho = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=client_id,
            transport=transport,
            clean_session=clean_session,
            manual_ack=manual_ack,
        )
        if username is not None:
            self.paho.username_pw_set(username)
        self._lock = threading.Lock()
        self.connected = threading.Event()
        self.session_present: bool | None = None
        self.acked: set[int] = set()
        self.subacked: set[int] = set()
        self.unsubacked: set[int] = set()
        self.received: list[mqtt.MQTTMessage] = []
        self.paho.on_connect = self._on_connect
        self.paho.on_publish = self._on_publish
        self.paho.on_subscribe = self._on_subscribe
        self.paho.on_unsubscribe = self._on_unsubscribe
        self.paho.on_message = self._on_message

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if not reason.is_failure:
            self.session_present = bool(flags.session_present)
            self.connected.set()

    def _on_publish(self, client: mqtt.Client, userdata: Any, mid: int, reason: Any, props: Any) -> None:
        with self._lock:
            self.acked.add(mid)

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int, reasons: Any, props: Any) -> None:
        with self._lock:
            self.subacked.add(mid)

    def _on_unsubscribe(self, client: mqtt.Client, userdata: Any, mid: int, reasons: Any, props: Any) -> None:
        with self._lock:
            self.unsubacked.add(mid)

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.received.append(message)

    def publish(self, topic: str, payload: bytes, qos: int = 1) -> int:
        info = self.paho.publish(topic, payload, qos=qos)
        assert info.rc == mqtt.MQTT_ERR_SUCCESS
        return info.mid

    def is_acked(self, mid: int) -> bool:
        with self._lock:
            return mid in self.acked

    async def subscribe(self, topic_filter: str, qos: int = 1) -> None:
        rc, mid = self.paho.subscribe(topic_filter, qos=qos)
        assert rc == mqtt.MQTT_ERR_SUCCESS
        await eventually(lambda: mid in self.subacked)

    async def unsubscribe(self, topic_filter: str) -> None:
        rc, mid = self.paho.unsubscribe(topic_filter)
        assert rc == mqtt.MQTT_ERR_SUCCESS
        await eventually(lambda: mid in self.unsubacked)

    def on(self, topic: str) -> list[bytes]:
        with self._lock:
            return [m.payload for m in self.received if m.topic == topic]

    def messages(self, topic: str | None = None) -> list[mqtt.MQTTMessage]:
        with self._lock:
            return [m for m in self.received if topic is None or m.topic == topic]

    async def start(self, port: int, keepalive: int = 30) -> Client:
        """Connect to the broker on `port` and wait for an accepting CONNACK."""
        self.paho.connect_async("127.0.0.1", port, keepalive=keepalive)
        self.paho.loop_start()
        await eventually(self.connected.is_set)
        return self

    async def stop(self) -> None:
        """DISCONNECT and stop the network thread."""
        self.paho.disconnect()
        await asyncio.to_thread(self.paho.loop_stop)

    async def vanish(self) -> None:
        """Lose the link without DISCONNECT, as a vehicle driving into a tunnel does."""
        sock = self.paho.socket()
        await asyncio.to_thread(self.paho.loop_stop)
        if sock is not None:
            sock.close()


ClientFactory = Callable[..., Awaitable[Client]]


def _remaining_length(size: int) -> bytes:
    encoded = bytearray()
    while True:
        size, digit = divmod(size, 128)
        encoded.append(digit | (0x80 if size else 0))
        if not size:
            return bytes(encoded)


def _string(value: bytes) -> bytes:
    return len(value).to_bytes(2, "big") + value


def connect_packet(
    client_id: str, keepalive: int = 30, *, clean: bool = True, will: tuple[str, bytes] | None = None
) -> bytes:
    """An MQTT 3.1.1 CONNECT, for clients paho cannot imitate; `will` is (topic, message) at QoS 0."""
    flags = (0x02 if clean else 0) | (0x04 if will else 0)
    body = b"\x00\x04MQTT\x04" + bytes([flags]) + keepalive.to_bytes(2, "big") + _string(client_id.encode())
    if will is not None:
        body += _string(will[0].encode()) + _string(will[1])
    return b"\x10" + _remaining_length(len(body)) + body


def publish_packet(topic: str, payload: bytes, qos: int = 0, packet_id: int = 0, *, dup: bool = False) -> bytes:
    """A PUBLISH (QoS 0 unless told), with no checks on the topic."""
    encoded = topic.encode()
    body = len(encoded).to_bytes(2, "big") + encoded
    if qos:
        body += packet_id.to_bytes(2, "big")
    body += payload
    flags = (0x08 if dup else 0) | (qos << 1)
    return bytes([0x30 | flags]) + _remaining_length(len(body)) + body


def ack_packet(kind: int, packet_id: int) -> bytes:
    """PUBACK (0x40), PUBREC (0x50), PUBREL (0x62) or PUBCOMP (0x70) for `packet_id`."""
    return bytes([kind, 2]) + packet_id.to_bytes(2, "big")


PUBACK, PUBREC, PUBREL, PUBCOMP = 0x40, 0x50, 0x62, 0x70


class RawClient:
    """A bare socket speaking just enough MQTT to connect and then misbehave."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self._ping_pending = False

    @classmethod
    async def connect(
        cls,
        port: int,
        client_id: str,
        keepalive: int = 30,
        *,
        clean: bool = True,
        will: tuple[str, bytes] | None = None,
        expect: int = 0,
    ) -> RawClient:
        """Connect and check the CONNACK return code (0 accepted, 5 not authorised)."""
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(connect_packet(client_id, keepalive, clean=clean, will=will))
        await writer.drain()
        connack = await asyncio.wait_for(reader.readexactly(4), 5)
        assert connack[0] == 0x20
        assert connack[3] == expect, f"CONNACK return code {connack[3]}, expected {expect}"
        return cls(reader, writer)

    async def publish(self, topic: str, payload: bytes, qos: int = 0, packet_id: int = 0, *, dup: bool = False) -> None:
        self.writer.write(publish_packet(topic, payload, qos, packet_id, dup=dup))
        await self.writer.drain()

    async def send(self, packet: bytes) -> None:
        self.writer.write(packet)
        await self.writer.drain()

    async def read_packet(self, within: float = 5.0) -> bytes:
        """The next whole packet from the broker (fixed header included); short ones only."""
        head = await asyncio.wait_for(self.reader.readexactly(2), within)
        if head[1] & 0x80:
            raise AssertionError("read_packet handles packets under 128 bytes only")
        return head + await asyncio.wait_for(self.reader.readexactly(head[1]), within)

    async def nothing_within(self, seconds: float) -> bool:
        """True when the broker sends nothing for `seconds`."""
        try:
            await asyncio.wait_for(self.reader.readexactly(1), seconds)
        except TimeoutError:
            return True
        return False

    async def ping(self, within: float = 5.0) -> bool:
        """True when the broker answers a PINGREQ, i.e. the connection is being served.

        On timeout the PINGREQ stays sent; a later `ping` reads its answer first.
        """
        if not self._ping_pending:
            self.writer.write(b"\xc0\x00")
            await self.writer.drain()
            self._ping_pending = True
        answer = await asyncio.wait_for(self.reader.readexactly(2), within)
        self._ping_pending = False
        return answer == b"\xd0\x00"

    async def closed_by_broker(self) -> bool:
        """True once the broker has closed the connection (EOF)."""
        data = await asyncio.wait_for(self.reader.read(1024), 5)
        return data == b""

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()
