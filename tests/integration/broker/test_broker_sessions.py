"""Persistent sessions (clean session = false): offline queues, redelivery with DUP, expiry, bounds."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import uuid
from collections.abc import AsyncIterator, Callable

import pytest
from broker_harness import PUBACK, Client, RawClient, RecordingSink, ack_packet, eventually
from prometheus_client import CollectorRegistry

from broker import BrokerMetrics, EmbeddedBroker
from kernel import ConfigError

ClientMaker = Callable[..., Client]


@pytest.fixture
def topic() -> str:
    """A topic no other test publishes on."""
    return f"depot/{uuid.uuid4().hex[:8]}/orders"


@pytest.fixture
async def clients() -> AsyncIterator[ClientMaker]:
    """Paho clients made here are stopped at teardown, whatever state they were left in."""
    made: list[Client] = []

    def make(client_id: str, **kwargs: bool) -> Client:
        client = Client(client_id, **kwargs)
        made.append(client)
        return client

    yield make
    for client in made:
        with contextlib.suppress(OSError):
            client.paho.disconnect()
        await asyncio.to_thread(client.paho.loop_stop)


async def test_qos1_published_while_offline_is_delivered_on_reconnect(
    hub: EmbeddedBroker, clients: ClientMaker, topic: str
) -> None:
    """A persistent session keeps QoS 1 messages while its client is away and delivers them in order, not retained."""
    cid = f"tracker-{uuid.uuid4().hex[:8]}"
    subscriber = await clients(cid, clean_session=False).start(hub.port)
    assert subscriber.session_present is False
    await subscriber.subscribe(topic, qos=1)
    await subscriber.stop()

    publisher = await clients(f"ops-{uuid.uuid4().hex[:8]}").start(hub.port)
    mids = [publisher.publish(topic, f"order {n}".encode(), qos=1) for n in range(5)]
    await eventually(lambda: all(publisher.is_acked(mid) for mid in mids))

    again = await clients(cid, clean_session=False).start(hub.port)
    assert again.session_present is True
    await eventually(lambda: len(again.messages(topic)) == 5)
    received = again.messages(topic)
    assert [m.payload for m in received] == [f"order {n}".encode() for n in range(5)]
    assert {(m.qos, m.retain, m.dup) for m in received} == {(1, False, False)}


async def test_qos0_is_not_queued_and_clean_session_discards_the_queue(
    hub: EmbeddedBroker, clients: ClientMaker, topic: str
) -> None:
    """QoS 0 messages are not kept for an absent client, and reconnecting clean throws the session away."""
    cid = f"tracker-{uuid.uuid4().hex[:8]}"
    subscriber = await clients(cid, clean_session=False).start(hub.port)
    await subscriber.subscribe(topic, qos=1)
    await subscriber.stop()

    publisher = await clients(f"ops-{uuid.uuid4().hex[:8]}").start(hub.port)
    publisher.publish(topic, b"fire and forget", qos=0)
    kept = publisher.publish(topic, b"kept", qos=1)
    await eventually(lambda: publisher.is_acked(kept))

    again = await clients(cid, clean_session=False).start(hub.port)
    await eventually(lambda: len(again.messages(topic)) == 1)
    assert again.on(topic) == [b"kept"]
    await again.stop()

    dropped = publisher.publish(topic, b"for a session about to be dropped", qos=1)
    await eventually(lambda: publisher.is_acked(dropped))
    fresh = await clients(cid, clean_session=True).start(hub.port)
    assert fresh.session_present is False
    await fresh.stop()
    resumed = await clients(cid, clean_session=False).start(hub.port)
    assert resumed.session_present is False
    await asyncio.sleep(0.3)
    assert resumed.messages() == []


async def test_delivery_qos_is_the_lower_of_message_and_subscription(
    hub: EmbeddedBroker, clients: ClientMaker, topic: str
) -> None:
    """A QoS 0 message reaches a QoS 1 subscriber at QoS 0, and a QoS 1 message a QoS 0 subscriber at QoS 0."""
    high = await clients(f"high-{uuid.uuid4().hex[:8]}").start(hub.port)
    await high.subscribe(topic, qos=1)
    low = await clients(f"low-{uuid.uuid4().hex[:8]}").start(hub.port)
    await low.subscribe(topic, qos=0)
    publisher = await clients(f"ops-{uuid.uuid4().hex[:8]}").start(hub.port)

    publisher.publish(topic, b"zero", qos=0)
    publisher.publish(topic, b"one", qos=1)
    await eventually(lambda: len(high.messages(topic)) == 2 and len(low.messages(topic)) == 2)
    assert [(m.payload, m.qos) for m in high.messages(topic)] == [(b"zero", 0), (b"one", 1)]
    assert [(m.payload, m.qos) for m in low.messages(topic)] == [(b"zero", 0), (b"one", 0)]


async def test_unacknowledged_qos1_is_redelivered_with_dup_on_reconnect(
    hub: EmbeddedBroker, clients: ClientMaker, topic: str
) -> None:
    """A message the client never PUBACKed comes again, same packet id, DUP set; once acked it is gone."""
    cid = f"tracker-{uuid.uuid4().hex[:8]}"
    forgetful = await clients(cid, clean_session=False, manual_ack=True).start(hub.port)
    await forgetful.subscribe(topic, qos=1)
    publisher = await clients(f"ops-{uuid.uuid4().hex[:8]}").start(hub.port)
    publisher.publish(topic, b"unlock bay 4", qos=1)
    await eventually(lambda: len(forgetful.messages(topic)) == 1)
    [first] = forgetful.messages(topic)
    assert first.dup is False
    await forgetful.vanish()

    again = await clients(cid, clean_session=False, manual_ack=True).start(hub.port)
    await eventually(lambda: len(again.messages(topic)) == 1)
    [second] = again.messages(topic)
    assert (second.payload, second.mid, second.dup, second.qos) == (b"unlock bay 4", first.mid, True, 1)
    again.paho.ack(second.mid, second.qos)
    await asyncio.sleep(0.2)
    await again.stop()

    third = await clients(cid, clean_session=False).start(hub.port)
    assert third.session_present is True
    await asyncio.sleep(0.3)
    assert third.messages() == []


async def test_unacknowledged_qos1_survives_a_long_wait_before_reconnect(
    hub: EmbeddedBroker, raw_clients: list[RawClient], clients: ClientMaker, topic: str
) -> None:
    """amqtt forgot an unacked message after 5 s; the session keeps it until the client acknowledges it."""
    cid = f"tracker-{uuid.uuid4().hex[:8]}"
    subscriber = await clients(cid, clean_session=False).start(hub.port)
    await subscriber.subscribe(topic, qos=1)
    await subscriber.stop()
    slow = await RawClient.connect(hub.port, cid, clean=False)
    raw_clients.append(slow)
    publisher = await clients(f"ops-{uuid.uuid4().hex[:8]}").start(hub.port)
    publisher.publish(topic, b"m", qos=1)
    first = await slow.read_packet()
    assert first[0] == 0x32, "expected a QoS 1 PUBLISH without DUP"
    packet_id = first[-3:-1]
    await asyncio.sleep(5.5)
    await slow.close()

    again = await RawClient.connect(hub.port, cid, clean=False)
    raw_clients.append(again)
    resent = await again.read_packet()
    assert resent[0] == 0x3A, "expected the same PUBLISH with DUP set"
    assert resent[-3:-1] == packet_id
    await again.send(ack_packet(PUBACK, int.from_bytes(packet_id, "big")))
    assert await again.ping()


async def test_offline_queue_keeps_the_newest_and_counts_what_it_dropped(
    sink: RecordingSink, clients: ClientMaker, topic: str
) -> None:
    """Beyond `max_queued_messages` the oldest queued message goes, and the metric says how many went."""
    registry = CollectorRegistry()
    async with EmbeddedBroker(
        sink, host="127.0.0.1", port=0, max_queued_messages=3, metrics=BrokerMetrics(registry)
    ) as hub:
        cid = f"tracker-{uuid.uuid4().hex[:8]}"
        subscriber = await clients(cid, clean_session=False).start(hub.port)
        await subscriber.subscribe(topic, qos=1)
        await subscriber.stop()
        publisher = await clients(f"ops-{uuid.uuid4().hex[:8]}").start(hub.port)
        mids = [publisher.publish(topic, f"{n}".encode(), qos=1) for n in range(10)]
        await eventually(lambda: all(publisher.is_acked(mid) for mid in mids))
        await eventually(
            lambda: registry.get_sample_value("fleethub_mqtt_queued_messages_dropped_total") == 7, within=2
        )

        again = await clients(cid, clean_session=False).start(hub.port)
        await eventually(lambda: len(again.messages(topic)) == 3)
        await asyncio.sleep(0.2)
        assert again.on(topic) == [b"7", b"8", b"9"]
        await again.stop()
        await publisher.stop()


async def test_session_expires_after_the_configured_time(sink: RecordingSink, clients: ClientMaker, topic: str) -> None:
    """A session left alone longer than `session_expiry_s` is dropped with its subscriptions and queue."""
    async with EmbeddedBroker(sink, host="127.0.0.1", port=0, session_expiry_s=1) as hub:
        cid = f"tracker-{uuid.uuid4().hex[:8]}"
        subscriber = await clients(cid, clean_session=False).start(hub.port)
        await subscriber.subscribe(topic, qos=1)
        await subscriber.stop()
        publisher = await clients(f"ops-{uuid.uuid4().hex[:8]}").start(hub.port)
        stale = publisher.publish(topic, b"stale", qos=1)
        await eventually(lambda: publisher.is_acked(stale))

        await eventually(lambda: hub.stored_sessions() == 1, within=5)
        again = await clients(cid, clean_session=False).start(hub.port)
        assert again.session_present is False
        publisher.publish(topic, b"after expiry", qos=1)
        await asyncio.sleep(0.3)
        assert again.messages() == [], "the expired session's subscription still routes"
        await again.stop()
        await publisher.stop()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"session_expiry_s": 0}, "session expiry"),
        ({"max_queued_messages": 0}, "queued messages"),
        ({"listen_backlog": 0}, "listen backlog"),
    ],
)
async def test_bad_session_settings_are_config_errors(
    sink: RecordingSink, kwargs: dict[str, int], message: str
) -> None:
    """Session settings out of range fail at construction, naming the setting."""
    with pytest.raises(ConfigError, match=message):
        EmbeddedBroker(sink, **kwargs)


async def test_listen_backlog_reaches_the_listening_socket(sink: RecordingSink) -> None:
    """`mqtt.listen_backlog` is the TCP listener's accept queue (`ss` shows it as Send-Q)."""
    ss = shutil.which("ss")
    if ss is None:
        pytest.fail("this test reads the listening socket's backlog with `ss` (iproute2)")
    async with EmbeddedBroker(sink, host="127.0.0.1", port=0, listen_backlog=77) as hub:
        proc = await asyncio.create_subprocess_exec(ss, "-ltnH", f"sport = :{hub.port}", stdout=asyncio.subprocess.PIPE)
        stdout, _ = await proc.communicate()
    # State, Recv-Q, Send-Q (the backlog of a listening socket), local address, peer.
    state, _recv_q, send_q, *_ = stdout.decode().split()
    assert state == "LISTEN"
    assert send_q == "77"
