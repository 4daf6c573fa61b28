"""The broker restarted on the same store (SQLite, PostgreSQL) resumes QoS 2 exchanges where they stopped."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from broker_harness import RecordingSink
from wire_client import WireClient

from broker import EmbeddedBroker
from broker.codec import Ack, PacketType, Publish, Subscribe, Subscription, Version
from broker.stores import PostgresBrokerStore, SqliteBrokerStore
from kernel import PostgresDatabase, SqliteDatabase

Opener = Callable[[], contextlib.AbstractAsyncContextManager[EmbeddedBroker]]


@pytest.fixture(params=["sqlite", "postgresql"])
def hub_on_store(request: pytest.FixtureRequest, tmp_path: Any, sink: RecordingSink) -> Opener:
    """Opens a broker on the same database each time, as a restarted hub would."""
    sqlite = request.param == "sqlite"
    url = f"sqlite:///{tmp_path}/hub.db" if sqlite else request.getfixturevalue("pg_url")

    @contextlib.asynccontextmanager
    async def open_hub() -> AsyncIterator[EmbeddedBroker]:
        if request.param == "sqlite":
            async with (
                SqliteDatabase(url) as db,
                EmbeddedBroker(sink, host="127.0.0.1", port=0, store=SqliteBrokerStore(db), sys_interval_s=0) as hub,
            ):
                yield hub
        else:
            async with (
                PostgresDatabase(url, pool_min_size=1, pool_max_size=4) as db,
                EmbeddedBroker(sink, host="127.0.0.1", port=0, store=PostgresBrokerStore(db), sys_interval_s=0) as hub,
            ):
                yield hub

    return open_hub


async def test_outgoing_qos2_resumes_with_pubrel(hub_on_store: Opener) -> None:
    """A QoS 2 delivery past PUBREC when the hub stopped continues with PUBREL; the message is not sent again."""
    topic = f"depot/{uuid.uuid4().hex[:6]}/gate"
    cid = f"sub-{uuid.uuid4().hex[:6]}"
    async with hub_on_store() as hub:
        subscriber, _ = await WireClient.connect(hub.port, cid, version=Version.V311, clean=False)
        await subscriber.send(Subscribe(1, [Subscription(topic, 2)]))
        await subscriber.recv()
        publisher, _ = await WireClient.connect(hub.port, f"pub-{uuid.uuid4().hex[:6]}", version=Version.V311)
        await publisher.send(Publish(topic, b"open", 2, packet_id=3))
        assert await publisher.recv() == Ack(PacketType.PUBREC, 3)
        await publisher.send(Ack(PacketType.PUBREL, 3))
        assert await publisher.recv() == Ack(PacketType.PUBCOMP, 3)
        delivered = await subscriber.recv()
        assert isinstance(delivered, Publish)
        assert (delivered.payload, delivered.qos) == (b"open", 2)
        await subscriber.send(Ack(PacketType.PUBREC, delivered.packet_id))
        assert await subscriber.recv() == Ack(PacketType.PUBREL, delivered.packet_id)
        await subscriber.close()
        await publisher.close()
    async with hub_on_store() as hub:
        again, connack = await WireClient.connect(hub.port, cid, version=Version.V311, clean=False)
        assert connack.session_present
        assert await again.recv() == Ack(PacketType.PUBREL, delivered.packet_id)
        await again.send(Ack(PacketType.PUBCOMP, delivered.packet_id))
        assert await again.recv_all(0.3) == []
        await again.close()


async def test_incoming_qos2_id_survives_so_a_resend_is_not_delivered_twice(hub_on_store: Opener) -> None:
    """A QoS 2 PUBLISH that got PUBREC before the restart, resent with DUP after it, reaches subscribers once."""
    topic = f"depot/{uuid.uuid4().hex[:6]}/gate"
    sub_id, pub_id = f"sub-{uuid.uuid4().hex[:6]}", f"pub-{uuid.uuid4().hex[:6]}"
    async with hub_on_store() as hub:
        subscriber, _ = await WireClient.connect(hub.port, sub_id, version=Version.V311, clean=False)
        await subscriber.send(Subscribe(1, [Subscription(topic, 1)]))
        await subscriber.recv()
        await subscriber.close()
        publisher, _ = await WireClient.connect(hub.port, pub_id, version=Version.V311, clean=False)
        await publisher.send(Publish(topic, b"once", 2, packet_id=5))
        assert await publisher.recv() == Ack(PacketType.PUBREC, 5)
        await publisher.close()
    async with hub_on_store() as hub:
        publisher, connack = await WireClient.connect(hub.port, pub_id, version=Version.V311, clean=False)
        assert connack.session_present
        await publisher.send(Publish(topic, b"once", 2, dup=True, packet_id=5))
        assert await publisher.recv() == Ack(PacketType.PUBREC, 5)
        await publisher.send(Ack(PacketType.PUBREL, 5))
        assert await publisher.recv() == Ack(PacketType.PUBCOMP, 5)
        subscriber, _ = await WireClient.connect(hub.port, sub_id, version=Version.V311, clean=False)
        got = [p for p in await subscriber.recv_all(0.5) if isinstance(p, Publish)]
        assert [p.payload for p in got] == [b"once"]
        await publisher.close()
        await subscriber.close()
