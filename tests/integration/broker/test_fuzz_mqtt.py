"""Fuzzing the real broker with malformed MQTT: whatever a client sends, the hub stays up and a canary is acknowledged.

The broker runs on its own event loop in a thread for the whole module; each example
opens a connection, sends a valid CONNECT followed by hypothesis-made bytes (valid
packets with bytes flipped, cut or appended, and raw noise), and closes it. After every
example a canary vehicle's QoS 1 telemetry must get its PUBACK.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from broker import EmbeddedBroker, codec
from broker.codec import Properties, Publish, Subscribe, Subscription, Version
from security import AbuseLimits
from twin.inbound import ACCEPTED, Inbound

VERSIONS = [Version.V31, Version.V311, Version.V5]


class AcceptingSink:
    """Ingest that commits everything at once (the fuzz targets the broker, not the pipeline)."""

    async def submit(self, item: Inbound) -> None:
        if item.ack is not None and not item.ack.done():
            item.ack.set_result(ACCEPTED)

    def try_submit(self, item: Inbound) -> bool:
        return True


class HubThread:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.stop: asyncio.Event | None = None
        self.hub: EmbeddedBroker | None = None
        self.thread = threading.Thread(target=self.loop.run_until_complete, args=(self._run(),), daemon=True)

    async def _run(self) -> None:
        self.stop = asyncio.Event()
        # Every fuzzing client connects from 127.0.0.1: connect-rate limits would refuse them, not the fuzz.
        abuse = AbuseLimits(connect_rate_per_ip_per_s=0, connect_rate_per_client_per_s=0)
        async with EmbeddedBroker(
            AcceptingSink(), host="127.0.0.1", port=0, max_payload_bytes=4096, sys_interval_s=0, connect_timeout_s=2,
            abuse=abuse,
        ) as hub:  # fmt: skip
            self.hub = hub
            self.ready.set()
            await self.stop.wait()

    def connected(self) -> int:
        assert self.hub is not None
        return asyncio.run_coroutine_threadsafe(_count(self.hub), self.loop).result(5)


async def _count(hub: EmbeddedBroker) -> int:
    return hub.connected_clients()


@pytest.fixture(scope="module")
def running() -> Iterator[HubThread]:
    runner = HubThread()
    runner.thread.start()
    assert runner.ready.wait(10)
    yield runner
    assert runner.stop is not None
    runner.loop.call_soon_threadsafe(runner.stop.set)
    runner.thread.join(15)
    runner.loop.close()


def _packet_for(version: Version, data: st.DataObject) -> bytes:
    choice = data.draw(st.sampled_from(["publish", "subscribe", "ack", "raw"]))
    topic = data.draw(st.sampled_from(["vehicles/veh-fuzz/telemetry", "depot/a", "a/+/b", "", "$SYS/x"]))
    if choice == "publish":
        qos = data.draw(st.integers(0, 2))
        props = (
            Properties(topic_alias=data.draw(st.none() | st.integers(1, 100)))
            if version is Version.V5
            else Properties()
        )
        packet: codec.Packet = Publish(
            topic or "x", data.draw(st.binary(max_size=64)), qos, packet_id=7 if qos else 0, properties=props
        )
    elif choice == "subscribe":
        packet = Subscribe(3, [Subscription(data.draw(st.sampled_from(["#", "a/#/b", "$share/g/x", "x"])), 1)])
    elif choice == "ack":
        packet = codec.Ack(data.draw(st.sampled_from(list(codec.PacketType)[3:7])), data.draw(st.integers(1, 9)))
    else:
        return data.draw(st.binary(min_size=1, max_size=64))
    raw = bytearray(codec.encode(packet, version))
    for _ in range(data.draw(st.integers(0, 3))):
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    return bytes(raw[: data.draw(st.integers(1, len(raw)))]) + data.draw(st.binary(max_size=8))


def _canary(port: int, packet_id: int) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(codec.encode(codec.Connect("veh-canary", Version.V311), Version.V311))
        assert sock.recv(4) == b"\x20\x02\x00\x00"
        sock.sendall(
            codec.encode(Publish("vehicles/veh-canary/telemetry", b'{"soc": 1}', 1, packet_id=packet_id), Version.V311)
        )
        assert sock.recv(4) == b"\x40\x02" + packet_id.to_bytes(2, "big")


_beats = iter(range(1, 1_000_000))


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow], deadline=None)
@given(st.sampled_from(VERSIONS), st.data())
def test_malformed_input_never_stops_the_broker(running: HubThread, version: Version, data: st.DataObject) -> None:
    """After any bytes from one client, the broker is up, serves a canary, and the fuzzing connection is gone."""
    assert running.hub is not None
    port = running.hub.port
    packets = [_packet_for(version, data) for _ in range(data.draw(st.integers(1, 4)))]
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(codec.encode(codec.Connect(f"fuzz-{version}", version), version))
        with contextlib.suppress(OSError):
            sock.recv(64)
            for packet in packets:
                sock.sendall(packet)
    _canary(port, next(_beats) % 65535 + 1)
    deadline = time.monotonic() + 5
    while running.connected() > 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert running.connected() == 0, "a closed fuzzing connection is still counted"
