"""Behaviours the public Paho interoperability tests check, written from the specification (3.1.1 and 5)."""

from __future__ import annotations

import uuid

import pytest
from broker_harness import RecordingSink
from prometheus_client import CollectorRegistry
from wire_client import WireClient

from broker import BrokerMetrics, EmbeddedBroker
from broker.codec import Ack, PacketType, Properties, Publish, Reason, Subscribe, Subscription, Version


@pytest.fixture
def topic() -> str:
    return f"interop/{uuid.uuid4().hex[:8]}"


async def test_overlapping_subscriptions_deliver_once_at_the_highest_qos(hub: EmbeddedBroker, topic: str) -> None:
    """Two matching filters of one client: one delivery, at the higher granted QoS, with both subscription ids."""
    client, _ = await WireClient.connect(hub.port, f"c-{uuid.uuid4().hex[:6]}")
    await client.send(Subscribe(1, [Subscription(f"{topic}/#", 2)], properties=_ids(1)))
    await client.recv()
    await client.send(Subscribe(2, [Subscription(f"{topic}/+", 1)], properties=_ids(2)))
    await client.recv()
    publisher, _ = await WireClient.connect(hub.port, f"p-{uuid.uuid4().hex[:6]}")
    await publisher.send(Publish(f"{topic}/x", b"overlap", 2, packet_id=1))
    got = [p for p in await client.recv_all(0.5) if isinstance(p, Publish)]
    assert len(got) == 1
    assert got[0].qos == 2
    assert sorted(got[0].properties.subscription_identifiers) == [1, 2]
    await client.close()
    await publisher.close()


def _ids(sub_id: int) -> Properties:
    return Properties(subscription_identifiers=[sub_id])


@pytest.mark.parametrize(("clean", "code"), [(True, Reason.SUCCESS), (False, Reason.CLIENT_IDENTIFIER_NOT_VALID)])
async def test_zero_length_client_id_in_311(hub: EmbeddedBroker, clean: bool, code: Reason) -> None:
    """3.1.1: an empty client id is accepted with clean session 1 and refused (return code 2) with 0."""
    client, connack = await WireClient.connect(hub.port, "", version=Version.V311, clean=clean)
    assert connack.reason is code
    await client.close()


async def test_qos1_publish_to_subscriber_is_acked_both_ways(hub: EmbeddedBroker, topic: str) -> None:
    """Publisher gets PUBACK; subscriber gets the message at QoS 1 and its PUBACK ends the flow (no resend)."""
    sub, _ = await WireClient.connect(hub.port, f"s-{uuid.uuid4().hex[:6]}", version=Version.V311)
    await sub.send(Subscribe(1, [Subscription(topic, 1)]))
    await sub.recv()
    pub, _ = await WireClient.connect(hub.port, f"p-{uuid.uuid4().hex[:6]}", version=Version.V311)
    await pub.send(Publish(topic, b"m", 1, packet_id=9))
    assert await pub.recv() == Ack(PacketType.PUBACK, 9)
    got = await sub.recv()
    assert isinstance(got, Publish)
    assert (got.payload, got.qos, got.dup) == (b"m", 1, False)
    await sub.send(Ack(PacketType.PUBACK, got.packet_id))
    assert await sub.recv_all(0.3) == []
    await sub.close()
    await pub.close()


async def test_retained_messages_are_bounded(sink: RecordingSink, topic: str) -> None:
    """Over `max_retained_messages` a retained PUBLISH on a new topic is delivered, not kept; replacing still works."""
    registry = CollectorRegistry()
    async with EmbeddedBroker(
        sink, host="127.0.0.1", port=0, max_retained_messages=2, metrics=BrokerMetrics(registry), sys_interval_s=0
    ) as hub:
        watcher, _ = await WireClient.connect(hub.port, "watcher", version=Version.V311)
        await watcher.send(Subscribe(1, [Subscription(f"{topic}/#", 0)]))
        await watcher.recv()
        pub, _ = await WireClient.connect(hub.port, "pub", version=Version.V311)
        for name in ("a", "b", "c"):
            await pub.send(Publish(f"{topic}/{name}", name.encode(), 0, retain=True))
        await pub.send(Publish(f"{topic}/a", b"a2", 0, retain=True))
        live = [p.payload for p in await watcher.recv_all(0.5) if isinstance(p, Publish)]
        assert live == [b"a", b"b", b"c", b"a2"]
        assert registry.get_sample_value("fleethub_mqtt_retained_refused_total") == 1
        late, _ = await WireClient.connect(hub.port, "late", version=Version.V311)
        await late.send(Subscribe(1, [Subscription(f"{topic}/#", 0)]))
        kept = sorted(p.payload for p in await late.recv_all(0.5) if isinstance(p, Publish))
        assert kept == [b"a2", b"b"]
        for client in (watcher, pub, late):
            await client.close()


async def test_sessions_are_bounded(sink: RecordingSink) -> None:
    """Beyond `max_sessions` a new client id is refused (3.1.1: 3, MQTT 5: 0x97); a held session still resumes."""
    registry = CollectorRegistry()
    async with EmbeddedBroker(
        sink, host="127.0.0.1", port=0, max_sessions=2, metrics=BrokerMetrics(registry), sys_interval_s=0
    ) as hub:
        kept, _ = await WireClient.connect(hub.port, "kept", version=Version.V311, clean=False)
        await kept.close()
        other, _ = await WireClient.connect(hub.port, "other", version=Version.V311)
        refused, connack = await WireClient.connect(hub.port, "third", version=Version.V311)
        assert connack.reason is Reason.SERVER_UNAVAILABLE
        refused5, connack5 = await WireClient.connect(hub.port, "third")
        assert connack5.reason is Reason.QUOTA_EXCEEDED
        again, connack = await WireClient.connect(hub.port, "kept", version=Version.V311, clean=False)
        assert (connack.reason, connack.session_present) == (Reason.SUCCESS, True)
        assert registry.get_sample_value("fleethub_mqtt_connections_refused_total", {"reason": "sessions"}) == 2
        for client in (other, refused, refused5, again):
            await client.close()
