"""MQTT 5 on the same listeners as 3.1.1: properties, reason codes, session expiry, aliases, flow control, options."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from broker_harness import MAX_PAYLOAD, RecordingSink, eventually
from wire_client import WireClient

from broker import EmbeddedBroker
from broker.codec import (
    Ack,
    Connack,
    Disconnect,
    PacketType,
    Properties,
    Publish,
    Reason,
    RetainHandling,
    Suback,
    Subscribe,
    Subscription,
    Unsuback,
    Unsubscribe,
    Version,
    Will,
)
from twin.inbound import ACCEPTED, Channel, MessageKind, Verdict

Connector = Callable[..., Awaitable[tuple[WireClient, Connack]]]


@pytest.fixture
async def wire() -> AsyncIterator[Connector]:
    """Connects wire clients; all are closed at teardown."""
    made: list[WireClient] = []

    async def connect(port: int, client_id: str | None = None, **kwargs: object) -> tuple[WireClient, Connack]:
        cid = f"c-{uuid.uuid4().hex[:8]}" if client_id is None else client_id
        client, connack = await WireClient.connect(port, cid, **kwargs)  # type: ignore[arg-type]
        made.append(client)
        return client, connack

    yield connect
    for client in made:
        await client.close()


@pytest.fixture
def topic() -> str:
    return f"depot/{uuid.uuid4().hex[:8]}/gate"


async def subscribe(client: WireClient, *subscriptions: Subscription, packet_id: int = 1, sub_id: int = 0) -> Suback:
    props = Properties(subscription_identifiers=[sub_id] if sub_id else [])
    await client.send(Subscribe(packet_id, list(subscriptions), props))
    suback = await client.recv()
    assert isinstance(suback, Suback)
    return suback


async def test_connack_announces_the_limits_within_a_second(hub: EmbeddedBroker, wire: Connector) -> None:
    """A v5 CONNECT with properties gets CONNACK at once, naming receive maximum, packet size and topic aliases."""
    started = time.monotonic()
    _, connack = await wire(hub.port, properties=Properties(session_expiry_interval=30, receive_maximum=10))
    assert time.monotonic() - started < 1.0
    assert connack.reason is Reason.SUCCESS
    assert connack.session_present is False
    props = connack.properties
    assert props.receive_maximum == 100
    assert props.maximum_packet_size == 1_048_576
    assert props.topic_alias_maximum == 64


async def test_empty_client_id_is_assigned_one(hub: EmbeddedBroker, wire: Connector) -> None:
    """MQTT 5: an empty client id is accepted and the assigned id comes back in CONNACK."""
    _, connack = await wire(hub.port, "")
    assigned = connack.properties.assigned_client_identifier
    assert assigned
    assert assigned.startswith("auto-")


async def test_mqtt31_client_is_served(hub: EmbeddedBroker, topic: str) -> None:
    """An MQTT 3.1 (MQIsdp) publisher is acknowledged and a 3.1 subscriber receives (mosquitto clients)."""
    sub = await asyncio.create_subprocess_exec(
        "mosquitto_sub", "-V", "mqttv31", "-p", str(hub.port), "-t", topic, "-C", "1", "-q", "1",
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        await eventually(lambda: hub.connected_clients() == 1)
        pub = await asyncio.create_subprocess_exec(
            "mosquitto_pub", "-V", "mqttv31", "-p", str(hub.port), "-t", topic, "-m", "from 3.1", "-q", "1", "-d",
            stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, _ = await asyncio.wait_for(pub.communicate(), 10)
        assert b"received PUBACK" in out
        received, _ = await asyncio.wait_for(sub.communicate(), 10)
        assert received == b"from 3.1\n"
    finally:
        if sub.returncode is None:
            sub.kill()
            await sub.wait()


async def test_mosquitto_v5_clients_exchange_properties(hub: EmbeddedBroker, topic: str) -> None:
    """`mosquitto_pub/sub -V mqttv5`: user properties, content type and response topic reach the subscriber."""
    sub = await asyncio.create_subprocess_exec(
        "mosquitto_sub", "-V", "mqttv5", "-p", str(hub.port), "-t", topic, "-C", "1", "-F", "%t|%p|%P|%C|%R",
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        await eventually(lambda: hub.connected_clients() == 1)
        pub = await asyncio.create_subprocess_exec(
            "mosquitto_pub", "-V", "mqttv5", "-p", str(hub.port), "-t", topic, "-m", "hello", "-q", "1",
            "-D", "publish", "user-property", "fleet", "acme",
            "-D", "publish", "content-type", "text/plain",
            "-D", "publish", "response-topic", f"{topic}/reply",
        )  # fmt: skip
        assert await asyncio.wait_for(pub.wait(), 10) == 0
        received, _ = await asyncio.wait_for(sub.communicate(), 10)
        assert received.decode().strip() == f"{topic}|hello|fleet:acme|text/plain|{topic}/reply"
    finally:
        if sub.returncode is None:
            sub.kill()
            await sub.wait()


async def test_v5_and_v311_vehicles_use_the_contract_side_by_side(
    hub: EmbeddedBroker, sink: RecordingSink, wire: Connector
) -> None:
    """Telemetry from both versions is ingested and PUBACKed after commit; both get their delta."""
    v5_id, v3_id = f"veh-{uuid.uuid4().hex[:8]}", f"veh-{uuid.uuid4().hex[:8]}"
    v5, _ = await wire(hub.port, v5_id)
    v3, _ = await wire(hub.port, v3_id, version=Version.V311)
    for client, vid in ((v5, v5_id), (v3, v3_id)):
        await subscribe(client, Subscription(f"vehicles/{vid}/twin/delta", 1))
        await client.send(Publish(f"vehicles/{vid}/telemetry", b'{"soc": 1}', 1, packet_id=3))
    for client, vid in ((v5, v5_id), (v3, v3_id)):
        [item] = await sink.wait_for(vid, MessageKind.TELEMETRY)
        assert item.ack is not None
        item.ack.set_result(ACCEPTED)
        assert await client.recv() == Ack(PacketType.PUBACK, 3)
        hub.channel.send(vid, Channel.DELTA, b'{"version": 2}')
        delivered = await client.recv()
        assert isinstance(delivered, Publish)
        assert (delivered.topic, delivered.payload) == (f"vehicles/{vid}/twin/delta", b'{"version": 2}')


async def test_refused_publish_gets_a_negative_puback(
    hub: EmbeddedBroker, sink: RecordingSink, wire: Connector, vid: str
) -> None:
    """v5 says why in the PUBACK: a refused topic, an oversized payload and a message ingest refused."""
    client, _ = await wire(hub.port, vid)
    await client.send(Publish(f"vehicles/{vid}/twin/delta", b"{}", 1, packet_id=1))
    bad_topic = await client.recv()
    assert isinstance(bad_topic, Ack)
    assert (bad_topic.packet_id, bad_topic.reason) == (1, Reason.NOT_AUTHORIZED)
    assert bad_topic.properties.reason_string
    await client.send(Publish(f"vehicles/{vid}/telemetry", b"x" * (MAX_PAYLOAD + 1), 1, packet_id=2))
    too_big = await client.recv()
    assert isinstance(too_big, Ack)
    assert (too_big.packet_id, too_big.reason) == (2, Reason.QUOTA_EXCEEDED)
    await client.send(Publish(f"vehicles/{vid}/telemetry", b"not json", 1, packet_id=3))
    [item] = await sink.wait_for(vid, MessageKind.TELEMETRY)
    assert item.ack is not None
    item.ack.set_result(Verdict.refused("not_json", "the payload is not JSON"))
    refused = await client.recv()
    assert refused == Ack(
        PacketType.PUBACK, 3, Reason.PAYLOAD_FORMAT_INVALID, Properties(reason_string="the payload is not JSON")
    )


async def test_session_expiry_keeps_and_then_drops_the_session(
    sink: RecordingSink, wire: Connector, topic: str
) -> None:
    """A session with an expiry interval resumes with what queued; after the interval it is gone."""
    async with EmbeddedBroker(sink, host="127.0.0.1", port=0, sys_interval_s=0) as hub:
        cid = f"dash-{uuid.uuid4().hex[:8]}"
        first, connack = await wire(hub.port, cid, properties=Properties(session_expiry_interval=2))
        assert connack.session_present is False
        await subscribe(first, Subscription(topic, 1))
        await first.send(Disconnect())
        await first.closed()
        publisher, _ = await wire(hub.port)
        await publisher.send(Publish(topic, b"while away", 1, packet_id=1))
        assert await publisher.recv() == Ack(PacketType.PUBACK, 1)
        again, connack = await wire(hub.port, cid, clean=False, properties=Properties(session_expiry_interval=1))
        assert connack.session_present is True
        queued = await again.recv()
        assert isinstance(queued, Publish)
        assert queued.payload == b"while away"
        await again.send(Ack(PacketType.PUBACK, queued.packet_id))
        await again.send(Disconnect())
        await again.closed()
        await eventually(lambda: hub.stored_sessions() == 1, within=5)
        _, connack = await wire(hub.port, cid, clean=False)
        assert connack.session_present is False


async def test_clean_start_zero_expiry_ends_the_session_with_the_connection(
    hub: EmbeddedBroker, wire: Connector
) -> None:
    """MQTT 5 without a session expiry interval: nothing is kept, whatever clean start says."""
    cid = f"dash-{uuid.uuid4().hex[:8]}"
    first, _ = await wire(hub.port, cid, clean=False)
    await subscribe(first, Subscription("depot/#", 1))
    await first.send(Disconnect())
    await first.closed()
    _, connack = await wire(hub.port, cid, clean=False)
    assert connack.session_present is False


async def test_topic_alias_stands_for_the_topic(hub: EmbeddedBroker, wire: Connector, topic: str) -> None:
    """A PUBLISH may set an alias and later ones send only it; an unknown alias ends the connection."""
    subscriber, _ = await wire(hub.port)
    await subscribe(subscriber, Subscription(topic, 0))
    publisher, _ = await wire(hub.port)
    await publisher.send(Publish(topic, b"first", 0, properties=Properties(topic_alias=5)))
    await publisher.send(Publish("", b"second", 0, properties=Properties(topic_alias=5)))
    got = [await subscriber.recv(), await subscriber.recv()]
    assert [(p.topic, p.payload, p.properties.topic_alias) for p in got if isinstance(p, Publish)] == [
        (topic, b"first", None),
        (topic, b"second", None),
    ]
    await publisher.send(Publish("", b"third", 0, properties=Properties(topic_alias=6)))
    assert await publisher.recv() == Disconnect(Reason.PROTOCOL_ERROR)
    assert await publisher.closed()
    await publisher.close()
    over, _ = await wire(hub.port)
    await over.send(Publish(topic, b"x", 0, properties=Properties(topic_alias=65)))
    assert await over.recv() == Disconnect(Reason.TOPIC_ALIAS_INVALID)


async def test_request_response_properties_pass_through(hub: EmbeddedBroker, wire: Connector, topic: str) -> None:
    """Response topic, correlation data and user properties reach the subscriber unchanged."""
    responder, _ = await wire(hub.port)
    await subscribe(responder, Subscription(topic, 1))
    requester, _ = await wire(hub.port)
    props = Properties(response_topic=f"{topic}/reply", correlation_data=b"\x01\x02", user_properties=[("a", "1")])
    await requester.send(Publish(topic, b"ping?", 1, packet_id=9, properties=props))
    assert await requester.recv() == Ack(PacketType.PUBACK, 9)
    request = await responder.recv()
    assert isinstance(request, Publish)
    assert request.properties.response_topic == f"{topic}/reply"
    assert request.properties.correlation_data == b"\x01\x02"
    assert request.properties.user_properties == [("a", "1")]


async def test_message_expiry_drops_stale_queued_messages(hub: EmbeddedBroker, wire: Connector, topic: str) -> None:
    """A queued message past its expiry is not delivered; one without expiry is, with the time left counted down."""
    cid = f"dash-{uuid.uuid4().hex[:8]}"
    first, _ = await wire(hub.port, cid, properties=Properties(session_expiry_interval=60))
    await subscribe(first, Subscription(topic, 1))
    await first.send(Disconnect())
    await first.closed()
    publisher, _ = await wire(hub.port)
    await publisher.send(Publish(topic, b"stale", 1, packet_id=1, properties=Properties(message_expiry_interval=1)))
    await publisher.send(Publish(topic, b"fresh", 1, packet_id=2, properties=Properties(message_expiry_interval=60)))
    await publisher.send(Publish(topic, b"forever", 1, packet_id=3))
    assert {(await publisher.recv()).packet_id for _ in range(3)} == {1, 2, 3}  # type: ignore[union-attr]
    await asyncio.sleep(1.5)
    again, _ = await wire(hub.port, cid, clean=False, properties=Properties(session_expiry_interval=60))
    got = [p for p in await again.recv_all(0.5) if isinstance(p, Publish)]
    assert [p.payload for p in got] == [b"fresh", b"forever"]
    assert 0 < (got[0].properties.message_expiry_interval or 0) <= 59
    assert got[1].properties.message_expiry_interval is None


async def test_receive_maximum_is_enforced_both_ways(
    sink: RecordingSink, wire: Connector, vid: str, topic: str
) -> None:
    """The hub sends no more unacknowledged messages than the client allows and cuts off a client over its own."""
    async with EmbeddedBroker(sink, host="127.0.0.1", port=0, receive_maximum=2, sys_interval_s=0) as hub:
        slow, _ = await wire(hub.port, properties=Properties(receive_maximum=1))
        await subscribe(slow, Subscription(topic, 1))
        publisher, _ = await wire(hub.port)
        for n in range(3):
            await publisher.send(Publish(topic, f"{n}".encode(), 1, packet_id=n + 1))
        first = await slow.recv()
        assert isinstance(first, Publish)
        assert first.payload == b"0"
        assert await slow.recv_all(0.3) == [], "a second message came while the first was unacknowledged"
        await slow.send(Ack(PacketType.PUBACK, first.packet_id))
        second = await slow.recv()
        assert isinstance(second, Publish)
        assert second.payload == b"1"

        eager, _ = await wire(hub.port, vid)
        for n in range(3):
            await eager.send(Publish(f"vehicles/{vid}/telemetry", b"{}", 1, packet_id=n + 1))
        assert await eager.recv() == Disconnect(Reason.RECEIVE_MAXIMUM_EXCEEDED)


async def test_client_maximum_packet_size_is_respected(hub: EmbeddedBroker, wire: Connector, topic: str) -> None:
    """A message over the client's announced maximum packet size is not sent to it; smaller ones are."""
    small, _ = await wire(hub.port, properties=Properties(maximum_packet_size=200))
    await subscribe(small, Subscription(topic, 0))
    publisher, _ = await wire(hub.port)
    await publisher.send(Publish(topic, b"x" * 500, 0))
    await publisher.send(Publish(topic, b"small", 0))
    got = [p for p in await small.recv_all(0.5) if isinstance(p, Publish)]
    assert [p.payload for p in got] == [b"small"]


async def test_no_local_and_retain_as_published(hub: EmbeddedBroker, wire: Connector, topic: str) -> None:
    """no-local keeps a client's own messages from it; retain-as-published keeps RETAIN on live messages."""
    me, _ = await wire(hub.port)
    await subscribe(me, Subscription(topic, 0, no_local=True))
    keeper, _ = await wire(hub.port)
    await subscribe(keeper, Subscription(topic, 0, retain_as_published=True))
    await me.send(Publish(topic, b"mine", 0, retain=True))
    got = await keeper.recv()
    assert isinstance(got, Publish)
    assert (got.payload, got.retain) == (b"mine", True)
    assert await me.recv_all(0.3) == []


async def test_retain_handling_options(hub: EmbeddedBroker, wire: Connector, topic: str) -> None:
    """Retain handling 0 sends retained messages, 1 only for a new subscription, 2 never."""
    publisher, _ = await wire(hub.port)
    await publisher.send(Publish(topic, b"kept", 1, retain=True, packet_id=1))
    assert await publisher.recv() == Ack(PacketType.PUBACK, 1)
    client, _ = await wire(hub.port)
    await subscribe(client, Subscription(topic, 0, retain_handling=RetainHandling.NEVER))
    assert await client.recv_all(0.3) == []
    await subscribe(client, Subscription(f"{topic}/#", 0, retain_handling=RetainHandling.SEND_IF_NEW), packet_id=2)
    [first] = await client.recv_all(0.3)
    assert isinstance(first, Publish)
    assert (first.payload, first.retain) == (b"kept", True)
    await subscribe(client, Subscription(f"{topic}/#", 0, retain_handling=RetainHandling.SEND_IF_NEW), packet_id=3)
    assert await client.recv_all(0.3) == []


async def test_subscription_identifier_comes_back(hub: EmbeddedBroker, wire: Connector, topic: str) -> None:
    """A SUBSCRIBE's subscription identifier is on every message that subscription delivers."""
    client, _ = await wire(hub.port)
    await subscribe(client, Subscription(topic, 0), sub_id=42)
    publisher, _ = await wire(hub.port)
    await publisher.send(Publish(topic, b"x", 0))
    got = await client.recv()
    assert isinstance(got, Publish)
    assert got.properties.subscription_identifiers == [42]


async def test_shared_subscription_spreads_messages(hub: EmbeddedBroker, wire: Connector, topic: str) -> None:
    """Members of `$share/{group}/...` each get some of the messages and together all, once each."""
    members = [(await wire(hub.port))[0] for _ in range(2)]
    for member in members:
        await subscribe(member, Subscription(f"$share/workers/{topic}", 0))
    publisher, _ = await wire(hub.port)
    for n in range(10):
        await publisher.send(Publish(topic, f"{n}".encode(), 0))
    got = [[p.payload for p in await m.recv_all(0.5) if isinstance(p, Publish)] for m in members]
    assert all(got), "a member got nothing"
    assert sorted(got[0] + got[1], key=int) == [f"{n}".encode() for n in range(10)]


async def test_unsubscribe_reason_codes(hub: EmbeddedBroker, wire: Connector, topic: str) -> None:
    """UNSUBACK says which filters existed."""
    client, _ = await wire(hub.port)
    await subscribe(client, Subscription(topic, 0))
    await client.send(Unsubscribe(5, [topic, f"{topic}/never"]))
    assert await client.recv() == Unsuback(5, [Reason.SUCCESS, Reason.NO_SUBSCRIPTION_EXISTED])


async def test_take_over_is_told_with_a_reason(hub: EmbeddedBroker, wire: Connector) -> None:
    """The evicted v5 connection gets DISCONNECT 0x8E (session taken over)."""
    cid = f"dash-{uuid.uuid4().hex[:8]}"
    first, _ = await wire(hub.port, cid)
    await wire(hub.port, cid)
    assert await first.recv() == Disconnect(Reason.SESSION_TAKEN_OVER)


async def test_will_with_delay_is_not_sent_when_the_session_resumes(
    hub: EmbeddedBroker, wire: Connector, topic: str
) -> None:
    """A delayed will fires after the delay when the client stays away, not when it comes back in time."""
    watcher, _ = await wire(hub.port)
    await subscribe(watcher, Subscription(f"{topic}/#", 0))
    will_props = Properties(will_delay_interval=1)
    props = Properties(session_expiry_interval=30)
    back_id, gone_id = f"back-{uuid.uuid4().hex[:6]}", f"gone-{uuid.uuid4().hex[:6]}"
    back, _ = await wire(hub.port, back_id, properties=props, will=Will(f"{topic}/back", b"lost", 0, False, will_props))
    gone, _ = await wire(hub.port, gone_id, properties=props, will=Will(f"{topic}/gone", b"lost", 0, False, will_props))
    await back.close()
    await gone.close()
    await wire(hub.port, back_id, clean=False, properties=props)
    got = [p for p in await watcher.recv_all(2.0) if isinstance(p, Publish)]
    assert [p.topic for p in got] == [f"{topic}/gone"]


async def test_twin_get_is_answered_on_the_response_topic(
    hub: EmbeddedBroker, sink: RecordingSink, wire: Connector, vid: str
) -> None:
    """A v5 twin/get with a response topic gets the document there too, with its correlation data."""
    client, _ = await wire(hub.port, vid)
    # no-local: its own twin/get is not echoed back to it.
    await subscribe(client, Subscription(f"vehicles/{vid}/#", 0, no_local=True))
    props = Properties(response_topic=f"vehicles/{vid}/replies/r1", correlation_data=b"c-1")
    await client.send(Publish(f"vehicles/{vid}/twin/get", b"{}", 0, properties=props))
    await sink.wait_for(vid, MessageKind.TWIN_GET)
    hub.channel.send(vid, Channel.DOCUMENT, b'{"version": 4}')
    got = {p.topic: p for p in await client.recv_all(0.5) if isinstance(p, Publish)}
    assert set(got) == {f"vehicles/{vid}/twin/doc", f"vehicles/{vid}/replies/r1"}
    reply = got[f"vehicles/{vid}/replies/r1"]
    assert (reply.payload, reply.properties.correlation_data) == (b'{"version": 4}', b"c-1")
    # Answered once: the next document goes to twin/doc only.
    hub.channel.send(vid, Channel.DOCUMENT, b'{"version": 5}')
    assert [p.topic for p in await client.recv_all(0.5) if isinstance(p, Publish)] == [f"vehicles/{vid}/twin/doc"]


async def test_twin_get_response_topic_of_another_vehicle_is_ignored(
    hub: EmbeddedBroker, sink: RecordingSink, wire: Connector, vid: str, new_vid: Callable[[], str]
) -> None:
    """A response topic outside the vehicle's own topics is not used (it could push documents to someone else)."""
    other = new_vid()
    watcher, _ = await wire(hub.port)
    await subscribe(watcher, Subscription(f"vehicles/{other}/#", 0))
    client, _ = await wire(hub.port, vid)
    await client.send(
        Publish(f"vehicles/{vid}/twin/get", b"{}", 0, properties=Properties(response_topic=f"vehicles/{other}/x"))
    )
    await sink.wait_for(vid, MessageKind.TWIN_GET)
    hub.channel.send(vid, Channel.DOCUMENT, b"{}")
    hub.channel.send(other, Channel.DOCUMENT, b"control")
    got = [p for p in await watcher.recv_all(0.5) if isinstance(p, Publish)]
    assert [(p.topic, p.payload) for p in got] == [(f"vehicles/{other}/twin/doc", b"control")]


async def test_commands_carry_their_result_topic(hub: EmbeddedBroker, wire: Connector, vid: str) -> None:
    """A command to a v5 vehicle names its result topic as Response Topic and its id as Correlation Data."""
    client, _ = await wire(hub.port, vid)
    await subscribe(client, Subscription(f"vehicles/{vid}/commands/+", 1))
    hub.channel.send(vid, Channel.COMMAND, b'{"name": "unlock"}', subtopic="cmd-9")
    command = await client.recv()
    assert isinstance(command, Publish)
    assert command.topic == f"vehicles/{vid}/commands/cmd-9"
    assert command.properties.response_topic == f"vehicles/{vid}/commands/cmd-9/result"
    assert command.properties.correlation_data == b"cmd-9"


async def test_server_keep_alive_replaces_a_missing_or_longer_one(sink: RecordingSink, wire: Connector) -> None:
    """With `max_keep_alive_s`, a v5 client asking for none or longer is told the broker's, and held to it."""
    async with EmbeddedBroker(sink, host="127.0.0.1", port=0, max_keep_alive_s=1, sys_interval_s=0) as hub:
        silent, connack = await wire(hub.port, keep_alive=0)
        assert connack.properties.server_keep_alive == 1
        started = time.monotonic()
        assert await silent.recv(within=5) == Disconnect(Reason.KEEP_ALIVE_TIMEOUT)
        assert 1.0 <= time.monotonic() - started < 4
        _, shorter = await wire(hub.port, keep_alive=1)
        assert shorter.properties.server_keep_alive is None


async def test_shutdown_names_the_server_reference(sink: RecordingSink, wire: Connector) -> None:
    """At shutdown a v5 client gets DISCONNECT 0x8B naming `server_reference`."""
    hub = EmbeddedBroker(sink, host="127.0.0.1", port=0, server_reference="standby.example:1883", sys_interval_s=0)
    async with hub:
        client, _ = await wire(hub.port)
    assert await client.recv() == Disconnect(
        Reason.SERVER_SHUTTING_DOWN, Properties(server_reference="standby.example:1883")
    )
