"""Accepted PUBLISHes reach the sink in order, and QoS 1 is acknowledged only after commit."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest
from broker_harness import Client, ClientFactory, RawClient, RecordingSink, eventually
from prometheus_client import CollectorRegistry

from broker import EmbeddedBroker
from twin.inbound import ACCEPTED, Channel, MessageKind, Verdict


async def test_qos1_telemetry_reaches_sink_and_puback_waits_for_commit(
    connect: ClientFactory, sink: RecordingSink, vid: str, registry: CollectorRegistry
) -> None:
    """A QoS 1 telemetry message is handed over with its fields; PUBACK follows its ack."""
    client = await connect(vid)
    before = time.time()
    mid = client.publish(f"vehicles/{vid}/telemetry", b'{"soc": 64.5}', qos=1)

    [item] = await sink.wait_for(vid, MessageKind.TELEMETRY)
    assert item.payload == b'{"soc": 64.5}'
    assert item.qos == 1
    assert item.client_id == vid
    assert item.peer.startswith("127.0.0.1:")
    assert before <= item.received_at <= time.time()
    assert item.ack is not None
    assert not item.ack.done()

    await asyncio.sleep(0.3)
    assert not client.is_acked(mid), "PUBACK sent before the data was committed"

    item.ack.set_result(ACCEPTED)
    await eventually(lambda: client.is_acked(mid))
    assert registry.get_sample_value("fleethub_mqtt_messages_received_total") == 1


async def test_qos0_telemetry_reaches_sink_without_ack(connect: ClientFactory, sink: RecordingSink, vid: str) -> None:
    """A QoS 0 message arrives with a verdict to give (it decides routing), and no PUBACK follows it."""
    client = await connect(vid)
    client.publish(f"vehicles/{vid}/telemetry", b'{"speed": 12}', qos=0)

    [item] = await sink.wait_for(vid, MessageKind.TELEMETRY)
    assert item.payload == b'{"speed": 12}'
    assert item.qos == 0
    assert item.ack is not None
    item.ack.set_result(ACCEPTED)


async def test_qos1_messages_are_pipelined_and_ordered(connect: ClientFactory, sink: RecordingSink, vid: str) -> None:
    """Many unacknowledged QoS 1 messages from one client are all in flight at once, in order."""
    client = await connect(vid)
    mids = [client.publish(f"vehicles/{vid}/telemetry", f'{{"seq": {n}}}'.encode()) for n in range(10)]

    items = await sink.wait_for(vid, MessageKind.TELEMETRY, count=10)
    assert [i.payload for i in items] == [f'{{"seq": {n}}}'.encode() for n in range(10)]
    assert not any(client.is_acked(mid) for mid in mids)

    for item in items[:5]:
        assert item.ack is not None
        item.ack.set_result(ACCEPTED)
    await eventually(lambda: all(client.is_acked(mid) for mid in mids[:5]))
    await asyncio.sleep(0.1)
    assert not any(client.is_acked(mid) for mid in mids[5:])

    for item in items[5:]:
        assert item.ack is not None
        item.ack.set_result(ACCEPTED)
    await eventually(lambda: all(client.is_acked(mid) for mid in mids))


async def test_unacked_qos1_is_cancelled_when_its_client_leaves(
    connect: ClientFactory, sink: RecordingSink, vid: str
) -> None:
    """A pending ack does not outlive its connection: it is cancelled, so no PUBACK is ever sent."""
    client = await connect(vid)
    client.publish(f"vehicles/{vid}/telemetry", b'{"soc": 3}', qos=1)
    [item] = await sink.wait_for(vid, MessageKind.TELEMETRY)
    client.paho.disconnect()

    await sink.wait_for(vid, MessageKind.DISCONNECTED)
    assert item.ack is not None
    await eventually(item.ack.cancelled)


async def test_up_topics_map_to_kinds(connect: ClientFactory, sink: RecordingSink, vid: str) -> None:
    """twin/get, twin/rejected and commands/{id}/result become their kinds; the command id is the subtopic."""
    client = await connect(vid)
    client.publish(f"vehicles/{vid}/twin/get", b'{"request_id": "r1"}', qos=0)
    client.publish(f"vehicles/{vid}/twin/rejected", b'{"charge_limit": "out of range"}', qos=0)
    client.publish(f"vehicles/{vid}/commands/cmd-42/result", b'{"status": "succeeded"}', qos=0)

    await eventually(lambda: len(sink.of(vid)) >= 4)
    kinds = [(i.kind, i.subtopic, i.payload) for i in sink.of(vid)[1:]]
    assert kinds == [
        (MessageKind.TWIN_GET, "", b'{"request_id": "r1"}'),
        (MessageKind.TWIN_REJECTED, "", b'{"charge_limit": "out of range"}'),
        (MessageKind.COMMAND_RESULT, "cmd-42", b'{"status": "succeeded"}'),
    ]


async def test_ingested_telemetry_still_reaches_subscribers(
    connect: ClientFactory, sink: RecordingSink, vid: str
) -> None:
    """A dashboard subscribed to vehicles/+/telemetry sees what the hub accepts, and only that."""
    dashboard = await connect("dashboard/1")
    await dashboard.subscribe("vehicles/+/telemetry")
    vehicle = await connect(vid)
    vehicle.publish(f"vehicles/{vid}/telemetry", b"refused", qos=0)
    vehicle.publish(f"vehicles/{vid}/telemetry", b'{"soc": 50}', qos=0)

    refused, accepted = await sink.wait_for(vid, MessageKind.TELEMETRY, count=2)
    assert refused.ack is not None
    assert accepted.ack is not None
    refused.ack.set_result(Verdict.refused("not_json", "payload is not valid JSON"))
    accepted.ack.set_result(ACCEPTED)
    await eventually(lambda: dashboard.on(f"vehicles/{vid}/telemetry") == [b'{"soc": 50}'])


async def test_full_sink_holds_back_only_its_publisher(
    connect: ClientFactory, sink: RecordingSink, new_vid: Callable[[], str]
) -> None:
    """While the sink waits on one vehicle, that vehicle's later messages wait too; others flow."""
    slow, fast = new_vid(), new_vid()
    slow_client = await connect(slow)
    fast_client = await connect(fast)
    await sink.wait_for(slow, MessageKind.CONNECTED)
    sink.hold(slow)

    slow_client.publish(f"vehicles/{slow}/telemetry", b'{"seq": 1}', qos=0)
    slow_client.publish(f"vehicles/{slow}/telemetry", b'{"seq": 2}', qos=0)
    fast_client.publish(f"vehicles/{fast}/telemetry", b'{"seq": 1}', qos=0)

    await sink.wait_for(fast, MessageKind.TELEMETRY)
    assert sink.of(slow, MessageKind.TELEMETRY) == []

    sink.release(slow)
    items = await sink.wait_for(slow, MessageKind.TELEMETRY, count=2)
    assert [i.payload for i in items] == [b'{"seq": 1}', b'{"seq": 2}']


async def test_full_pipeline_stops_reading_from_the_publisher(
    hub: EmbeddedBroker, sink: RecordingSink, raw_clients: list[RawClient], vid: str
) -> None:
    """While ingest is full the broker stops reading the client's socket (even a PINGREQ waits), then resumes."""
    raw = await RawClient.connect(hub.port, vid)
    raw_clients.append(raw)
    await sink.wait_for(vid, MessageKind.CONNECTED)
    sink.hold(vid)
    for n in range(200):
        await raw.publish(f"vehicles/{vid}/telemetry", f'{{"seq": {n}}}'.encode())

    with pytest.raises(TimeoutError):
        await raw.ping(within=0.5)

    sink.release(vid)
    assert await raw.ping()
    items = await sink.wait_for(vid, MessageKind.TELEMETRY, count=200)
    assert [i.payload for i in items] == [f'{{"seq": {n}}}'.encode() for n in range(200)]


async def test_other_topics_route_normally_and_ack_at_once(connect: ClientFactory, sink: RecordingSink) -> None:
    """Outside vehicles/ the hub is a plain broker: routed, acknowledged, not ingested."""
    listener = await connect("listener/1")
    await listener.subscribe("depot/north/#")
    talker = await connect("talker/1")
    mid = talker.publish("depot/north/doors", b"open", qos=1)

    await eventually(lambda: talker.is_acked(mid))
    await eventually(lambda: listener.on("depot/north/doors") == [b"open"])
    assert sink.items == []


async def test_websocket_listener_feeds_the_same_sink(sink: RecordingSink, vid: str) -> None:
    """MQTT over WebSocket is ingested like TCP, PUBACK after commit included."""
    client = Client(vid, transport="websockets")
    async with EmbeddedBroker(sink, host="127.0.0.1", port=0, ws_port=0) as hub:
        assert hub.ws_port is not None
        try:
            client.paho.connect_async("127.0.0.1", hub.ws_port, keepalive=30)
            client.paho.loop_start()
            await eventually(client.connected.is_set)
            mid = client.publish(f"vehicles/{vid}/telemetry", b'{"soc": 1}', qos=1)

            [item] = await sink.wait_for(vid, MessageKind.TELEMETRY)
            await asyncio.sleep(0.1)
            assert not client.is_acked(mid)
            assert item.ack is not None
            item.ack.set_result(ACCEPTED)
            await eventually(lambda: client.is_acked(mid))
        finally:
            client.paho.disconnect()
            await asyncio.to_thread(client.paho.loop_stop)


async def test_routing_follows_subscribe_and_unsubscribe(
    hub: EmbeddedBroker, connect: ClientFactory, new_vid: Callable[[], str]
) -> None:
    """Exact and wildcard subscribers get what matches; after unsubscribing or leaving, nothing."""
    first, second = new_vid(), new_vid()
    exact = await connect("dash/exact")
    await exact.subscribe(f"vehicles/{first}/twin/delta")
    wild = await connect("dash/wild")
    await wild.subscribe("vehicles/+/twin/#")

    hub.channel.send(first, Channel.DELTA, b"1")
    hub.channel.send(second, Channel.DELTA, b"2")
    await eventually(lambda: len(wild.received) == 2)
    await eventually(lambda: exact.on(f"vehicles/{first}/twin/delta") == [b"1"])

    await exact.unsubscribe(f"vehicles/{first}/twin/delta")
    wild.paho.disconnect()
    await eventually(lambda: hub.connected_clients() == 1)
    hub.channel.send(first, Channel.DELTA, b"3")
    canary = await connect("dash/canary")
    await canary.subscribe("vehicles/#")
    hub.channel.send(first, Channel.DELTA, b"4")

    await eventually(lambda: canary.on(f"vehicles/{first}/twin/delta") == [b"4"])
    assert exact.on(f"vehicles/{first}/twin/delta") == [b"1"]
    assert len(wild.received) == 2
