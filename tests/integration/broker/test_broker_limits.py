"""Connection and memory limits under attack, each while a canary vehicle's QoS 1 telemetry keeps being acknowledged."""

from __future__ import annotations

import asyncio
import contextlib
import resource
import time
import uuid
from collections.abc import AsyncIterator

import pytest
from broker_harness import MAX_PAYLOAD, RecordingSink, eventually, publish_packet
from prometheus_client import CollectorRegistry
from structlog.testing import capture_logs
from wire_client import WireClient

from broker import BrokerMetrics, EmbeddedBroker
from broker.codec import (
    Ack,
    Connect,
    Disconnect,
    PacketType,
    PingReq,
    PingResp,
    Properties,
    Publish,
    Reason,
    Subscribe,
    Subscription,
    Version,
)
from twin.inbound import ACCEPTED, MessageKind


class Canary:
    """A vehicle publishing QoS 1 telemetry whose every message the test's ingest accepts at once."""

    def __init__(self, hub: EmbeddedBroker, sink: RecordingSink) -> None:
        self.hub = hub
        self.sink = sink
        self.vid = f"canary-{uuid.uuid4().hex[:8]}"
        self.acked = 0
        self.latencies: list[float] = []
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Canary:
        self.client, _ = await WireClient.connect(self.hub.port, self.vid, version=Version.V311)
        self._task = asyncio.create_task(self._commit())
        return self

    async def _commit(self) -> None:
        seen = 0
        while True:
            items = self.sink.of(self.vid, MessageKind.TELEMETRY)
            for item in items[seen:]:
                if item.ack is not None and not item.ack.done():
                    item.ack.set_result(ACCEPTED)
            seen = len(items)
            await asyncio.sleep(0.005)

    async def beat(self, packet_id: int) -> None:
        """One QoS 1 telemetry message, waiting for its PUBACK."""
        started = time.monotonic()
        await self.client.send(Publish(f"vehicles/{self.vid}/telemetry", b'{"soc": 1}', 1, packet_id=packet_id))
        ack = await self.client.recv(within=5)
        assert ack == Ack(PacketType.PUBACK, packet_id)
        self.latencies.append(time.monotonic() - started)
        self.acked += 1

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.client.close()


@pytest.fixture
async def closing() -> AsyncIterator[list[asyncio.StreamWriter]]:
    """Sockets opened by a test, closed at teardown."""
    writers: list[asyncio.StreamWriter] = []
    yield writers
    for writer in writers:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


def metric(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return registry.get_sample_value(name, labels or None) or 0.0


async def test_connect_timeout_closes_silent_sockets(
    sink: RecordingSink, registry: CollectorRegistry, closing: list[asyncio.StreamWriter]
) -> None:
    """A socket that never sends CONNECT is closed after `connect_timeout_s`; the canary is served meanwhile."""
    async with EmbeddedBroker(
        sink, host="127.0.0.1", port=0, connect_timeout_s=0.5, metrics=BrokerMetrics(registry), sys_interval_s=0
    ) as hub:
        silent = []
        for _ in range(20):
            reader, writer = await asyncio.open_connection("127.0.0.1", hub.port)
            closing.append(writer)
            silent.append(reader)
        async with Canary(hub, sink) as canary:
            for n in range(5):
                await canary.beat(n + 1)
        for reader in silent:
            assert await asyncio.wait_for(reader.read(1), 5) == b""
        assert metric(registry, "fleethub_mqtt_connections_refused_total", reason="connect_timeout") == 20


async def test_connections_per_address_are_capped(
    sink: RecordingSink, registry: CollectorRegistry, closing: list[asyncio.StreamWriter]
) -> None:
    """Beyond `max_connections_per_address` a new connection from that address is closed at once; others connect."""
    async with EmbeddedBroker(
        sink, host="0.0.0.0", port=0, max_connections_per_address=3, metrics=BrokerMetrics(registry), sys_interval_s=0
    ) as hub:
        held = []
        for _ in range(3):
            client, _ = await WireClient.connect(hub.port, f"c-{uuid.uuid4().hex[:6]}", version=Version.V311)
            held.append(client)
        reader, writer = await asyncio.open_connection("127.0.0.1", hub.port)
        closing.append(writer)
        assert await asyncio.wait_for(reader.read(1), 5) == b""
        assert metric(registry, "fleethub_mqtt_connections_refused_total", reason="per_address") == 1
        # Another address (127.0.0.2 is loopback too) is not affected.
        reader2, writer2 = await asyncio.open_connection("127.0.0.2", hub.port, local_addr=("127.0.0.2", 0))
        other = WireClient(reader2, writer2, Version.V311)
        await other.send(Connect("other", Version.V311))
        assert (await other.recv()).reason is Reason.SUCCESS  # type: ignore[union-attr]
        await other.close()
        # Positive control: once one closes, the address may connect again.
        await held.pop().close()
        await eventually(lambda: hub.connected_clients() == 2)
        again, connack = await WireClient.connect(hub.port, "again", version=Version.V311)
        assert connack.reason is Reason.SUCCESS
        for client in [*held, again]:
            await client.close()


async def test_fd_headroom_refuses_new_connections_with_one_log_line(
    sink: RecordingSink, registry: CollectorRegistry, closing: list[asyncio.StreamWriter]
) -> None:
    """Near the open-files limit new connections are closed at once, logged once per window; existing ones go on."""
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    # Room for exactly two broker connections below the (real) limit.
    async with (
        EmbeddedBroker(
            sink, host="127.0.0.1", port=0, fd_headroom=soft - 2, metrics=BrokerMetrics(registry), sys_interval_s=0
        ) as hub,
        Canary(hub, sink) as canary,
    ):
        second, _ = await WireClient.connect(hub.port, "second", version=Version.V311)
        with capture_logs() as logs:
            refused = []
            for _ in range(30):
                reader, writer = await asyncio.open_connection("127.0.0.1", hub.port)
                closing.append(writer)
                refused.append(reader)
            for reader in refused:
                assert await asyncio.wait_for(reader.read(1), 5) == b""
            await canary.beat(1)
        lines = [e for e in logs if e.get("reason") == "fd_headroom"]
        assert len(lines) == 1
        assert metric(registry, "fleethub_mqtt_connections_refused_total", reason="fd_headroom") == 30
        await second.close()


@pytest.mark.parametrize("policy", ["drop_oldest", "disconnect"])
async def test_slow_subscriber_costs_a_bounded_queue(
    sink: RecordingSink, registry: CollectorRegistry, policy: str
) -> None:
    """A QoS 1 subscriber that stops reading holds at most its queue's bytes; the rest is dropped, or it is cut off."""
    limit = 64 * 1024
    async with EmbeddedBroker(
        sink, host="127.0.0.1", port=0, max_queued_bytes=limit, slow_subscriber=policy,
        metrics=BrokerMetrics(registry), sys_interval_s=0,
    ) as hub:  # fmt: skip
        topic = f"depot/{uuid.uuid4().hex[:6]}/flood"
        stalled, _ = await WireClient.connect(hub.port, "stalled", version=Version.V311)
        await stalled.send(Subscribe(1, [Subscription(topic, 1)]))
        await stalled.recv()
        # The stalled client never reads again; the flood is far beyond socket buffers and the queue.
        publisher, _ = await WireClient.connect(hub.port, "flooder", version=Version.V311)
        payload = b"x" * 1000
        async with Canary(hub, sink) as canary:
            for n in range(20_000):
                publisher.writer.write(publish_packet(topic, payload, qos=0))
                if n % 500 == 0:
                    await publisher.writer.drain()
                    await canary.beat(n // 500 + 1)
                    queued = [s.queued_bytes for s in hub.sessions() if s.client_id == "stalled"]
                    assert all(q <= limit + 2 * len(payload) for q in queued), queued
            await publisher.writer.drain()
            await canary.beat(999)
        assert max(canary.latencies) < 5
        if policy == "drop_oldest":
            await eventually(lambda: metric(registry, "fleethub_mqtt_slow_subscriber_total", action="dropped") > 0)
        else:
            await eventually(
                lambda: metric(registry, "fleethub_mqtt_slow_subscriber_total", action="disconnected") >= 1
            )
            await eventually(lambda: all(s.client_id != "stalled" for s in hub.sessions()))
        await publisher.close()
        await stalled.close()


async def test_errors_topic_flood_is_bounded(sink: RecordingSink, registry: CollectorRegistry, vid: str) -> None:
    """A vehicle reading its own errors topic that stops reading while sending bad messages fills only its queue."""
    limit = 32 * 1024
    async with EmbeddedBroker(
        sink, host="127.0.0.1", port=0, max_queued_bytes=limit, metrics=BrokerMetrics(registry), sys_interval_s=0
    ) as hub:
        attacker, _ = await WireClient.connect(hub.port, vid, version=Version.V311)
        await attacker.send(Subscribe(1, [Subscription(f"vehicles/{vid}/errors", 1)]))
        await attacker.recv()
        async with Canary(hub, sink) as canary:
            for n in range(20_000):
                attacker.writer.write(publish_packet(f"vehicles/{vid}/twin/delta", b"{}", qos=0))
                if n % 1000 == 0:
                    await attacker.writer.drain()
                    await canary.beat(n // 1000 + 1)
                    queued = [s.queued_bytes for s in hub.sessions() if s.client_id == vid]
                    assert all(q <= limit + 1024 for q in queued), queued
        await eventually(
            lambda: metric(registry, "fleethub_mqtt_messages_refused_total", reason="topic_not_allowed") > 1000
        )
        assert metric(registry, "fleethub_mqtt_slow_subscriber_total", action="dropped") > 0
        await attacker.close()


async def test_over_limit_qos1_is_acked_and_refused_not_a_resend_loop(
    hub: EmbeddedBroker, sink: RecordingSink, registry: CollectorRegistry, vid: str
) -> None:
    """Over the payload limit but under the packet size: PUBACK and a notice; the persistent client stays connected."""
    client, _ = await WireClient.connect(hub.port, vid, version=Version.V311, clean=False)
    errors = f"vehicles/{vid}/errors"
    await client.send(Subscribe(1, [Subscription(errors, 1)]))
    await client.recv()
    await client.send_raw(publish_packet(f"vehicles/{vid}/telemetry", b"x" * (200 * 1024), qos=1, packet_id=77))
    got = [await client.recv(), await client.recv()]
    assert Ack(PacketType.PUBACK, 77) in got, "no PUBACK for the oversized message"
    [notice] = [p for p in got if isinstance(p, Publish)]
    assert notice.topic == errors
    assert b"payload_too_large" in notice.payload
    await client.send(PingReq())
    assert isinstance(await client.recv(), PingResp), "the connection was closed"
    assert sink.of(vid, MessageKind.TELEMETRY) == []
    assert metric(registry, "fleethub_mqtt_messages_refused_total", reason="payload_too_large") == 1
    await client.close()


async def test_over_packet_limit_v5_client_is_told_why(sink: RecordingSink, vid: str) -> None:
    """A packet over `max_packet_bytes` closes the connection; an MQTT 5 client first gets DISCONNECT 0x95."""
    async with EmbeddedBroker(
        sink, host="127.0.0.1", port=0, max_payload_bytes=MAX_PAYLOAD, max_packet_bytes=4096, sys_interval_s=0
    ) as hub:
        client, connack = await WireClient.connect(hub.port, vid)
        assert connack.properties.maximum_packet_size == 4096
        await client.send_raw(publish_packet(f"vehicles/{vid}/telemetry", b"x" * 10_000)[:100])
        assert await client.recv() == Disconnect(Reason.PACKET_TOO_LARGE)
        await client.close()


async def test_connect_rate_is_keyed_by_address_and_name(sink: RecordingSink) -> None:
    """Someone at another address hammering CONNECT with a vehicle's id cannot spend that vehicle's connect budget."""
    from security import AbuseLimits

    abuse = AbuseLimits(connect_rate_per_client_per_s=0.01, connect_burst_per_client=2)
    async with EmbeddedBroker(sink, host="0.0.0.0", port=0, abuse=abuse, sys_interval_s=0) as hub:
        victim = f"veh-{uuid.uuid4().hex[:8]}"
        codes = []
        for _ in range(4):
            reader, writer = await asyncio.open_connection("127.0.0.2", hub.port, local_addr=("127.0.0.2", 0))
            attacker = WireClient(reader, writer, Version.V311)
            await attacker.send(Connect(victim, Version.V311))
            codes.append((await attacker.recv()).reason)  # type: ignore[union-attr]
            await attacker.close()
        # Positive control: the attacker's own address and name ran out of budget.
        assert codes[-1] is Reason.NOT_AUTHORIZED
        client, connack = await WireClient.connect(hub.port, victim, version=Version.V311)
        assert connack.reason is Reason.SUCCESS
        await client.close()


@pytest.mark.parametrize(("version", "name"), [(Version.V5, "MQTT 5"), (Version.V31, "MQTT 3.1")])
async def test_every_version_gets_a_connack_within_a_second(hub: EmbeddedBroker, version: Version, name: str) -> None:
    """MQTT 5 with properties and MQTT 3.1 CONNECTs get an accepting CONNACK at once."""
    started = time.monotonic()
    props = Properties(session_expiry_interval=60) if version is Version.V5 else Properties()
    client, connack = await WireClient.connect(hub.port, f"c-{uuid.uuid4().hex[:6]}", version=version, properties=props)
    assert time.monotonic() - started < 1.0, name
    assert connack.reason is Reason.SUCCESS
    await client.close()
