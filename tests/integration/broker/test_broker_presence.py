"""Vehicles' connects, subscribes and disconnects reach the sink in order, with the right reason."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from broker_harness import ClientFactory, RawClient, RecordingSink, eventually

from broker import EmbeddedBroker
from twin.inbound import Channel, MessageKind


def reasons(sink: RecordingSink, vehicle_id: str) -> list[str]:
    return [i.extra["reason"] for i in sink.of(vehicle_id, MessageKind.DISCONNECTED)]


async def test_clean_disconnect_follows_connect_and_messages(
    connect: ClientFactory, sink: RecordingSink, vid: str
) -> None:
    """CONNECTED, the vehicle's messages, then DISCONNECTED with reason clean, in that order."""
    client = await connect(vid)
    client.publish(f"vehicles/{vid}/telemetry", b'{"n": 1}', qos=0)
    client.paho.disconnect()

    await sink.wait_for(vid, MessageKind.DISCONNECTED)
    kinds = [i.kind for i in sink.of(vid)]
    assert kinds == [MessageKind.CONNECTED, MessageKind.TELEMETRY, MessageKind.DISCONNECTED]
    connected = sink.of(vid, MessageKind.CONNECTED)[0]
    assert connected.client_id == vid
    assert connected.peer.startswith("127.0.0.1:")
    assert reasons(sink, vid) == ["clean"]


async def test_dropped_socket_is_connection_lost(
    hub: EmbeddedBroker, sink: RecordingSink, raw_clients: list[RawClient], vid: str
) -> None:
    """A socket closed without DISCONNECT is reported as connection_lost."""
    raw = await RawClient.connect(hub.port, vid)
    await sink.wait_for(vid, MessageKind.CONNECTED)
    await raw.close()

    await sink.wait_for(vid, MessageKind.DISCONNECTED)
    assert reasons(sink, vid) == ["connection_lost"]


async def test_silent_client_is_cut_off_after_one_and_a_half_keepalives(
    hub: EmbeddedBroker, sink: RecordingSink, raw_clients: list[RawClient], vid: str
) -> None:
    """A client quiet past 1.5 keep-alive periods is disconnected as keepalive_timeout."""
    raw = await RawClient.connect(hub.port, vid, keepalive=1)
    raw_clients.append(raw)
    await sink.wait_for(vid, MessageKind.CONNECTED)
    started = asyncio.get_running_loop().time()

    assert await raw.closed_by_broker()
    waited = asyncio.get_running_loop().time() - started
    await sink.wait_for(vid, MessageKind.DISCONNECTED)
    assert reasons(sink, vid) == ["keepalive_timeout"]
    assert 1.0 < waited < 3.5


@pytest.mark.parametrize("clean", [True, False], ids=["clean-session", "persistent-session"])
async def test_second_connection_takes_over_the_first(
    hub: EmbeddedBroker, sink: RecordingSink, raw_clients: list[RawClient], vid: str, clean: bool
) -> None:
    """A newcomer with the same client id evicts the old connection, which is reported first."""
    first = await RawClient.connect(hub.port, vid, clean=clean)
    raw_clients.append(first)
    await sink.wait_for(vid, MessageKind.CONNECTED)

    second = await RawClient.connect(hub.port, vid, clean=clean)
    raw_clients.append(second)

    assert await first.closed_by_broker()
    assert await second.ping()
    await sink.wait_for(vid, MessageKind.CONNECTED, count=2)
    kinds = [i.kind for i in sink.of(vid)]
    assert kinds == [MessageKind.CONNECTED, MessageKind.DISCONNECTED, MessageKind.CONNECTED]
    assert reasons(sink, vid) == ["taken_over"]
    assert hub.connected_clients() == 1


async def test_subscribe_is_reported_after_suback(connect: ClientFactory, sink: RecordingSink, vid: str) -> None:
    """Each granted filter becomes SUBSCRIBED; one covering the delta topic names the delta channel."""
    client = await connect(vid)
    await client.subscribe(f"vehicles/{vid}/twin/delta")
    await client.subscribe(f"vehicles/{vid}/commands/+")
    await client.subscribe(f"vehicles/{vid}/#")

    items = await sink.wait_for(vid, MessageKind.SUBSCRIBED, count=3)
    assert [(i.payload, i.subtopic) for i in items] == [
        (f"vehicles/{vid}/twin/delta".encode(), "twin/delta"),
        (f"vehicles/{vid}/commands/+".encode(), ""),
        (f"vehicles/{vid}/#".encode(), "twin/delta"),
    ]


async def test_username_names_the_vehicle_and_other_clients_have_no_presence(
    connect: ClientFactory, sink: RecordingSink, vid: str
) -> None:
    """The username wins over the client id; a client whose ids are not vehicle ids is not a vehicle."""
    await connect("tracker/unit-7", username=vid)
    await sink.wait_for(vid, MessageKind.CONNECTED)
    assert sink.of(vid)[0].client_id == "tracker/unit-7"

    dashboard = await connect("dashboard/ops")
    await dashboard.subscribe("alerts/#")
    await asyncio.sleep(0.1)
    assert {i.vehicle_id for i in sink.items} == {vid}


async def test_channel_send_reaches_the_vehicle(
    hub: EmbeddedBroker, connect: ClientFactory, sink: RecordingSink, vid: str
) -> None:
    """channel.send publishes on the vehicle's topic for that channel, commands under their id."""
    client = await connect(vid)
    await client.subscribe(f"vehicles/{vid}/#")

    hub.channel.send(vid, Channel.DELTA, b'{"version": 3, "delta": {"charge_limit": 80}}')
    hub.channel.send(vid, Channel.COMMAND, b'{"name": "unlock"}', subtopic="cmd-1")

    await eventually(lambda: len(client.received) == 2)
    assert client.on(f"vehicles/{vid}/twin/delta") == [b'{"version": 3, "delta": {"charge_limit": 80}}']
    assert client.on(f"vehicles/{vid}/commands/cmd-1") == [b'{"name": "unlock"}']
    assert sink.of(vid, MessageKind.TELEMETRY) == []


async def test_hub_publish_reaches_subscribers(hub: EmbeddedBroker, connect: ClientFactory) -> None:
    """A hub-originated alert reaches a maintenance subscriber."""
    maintenance = await connect("maint/1")
    await maintenance.subscribe("alerts/default/#")

    await hub.publish("alerts/default/critical/low_soc/veh-1", b'{"state": "raised"}', qos=1)

    await eventually(lambda: maintenance.on("alerts/default/critical/low_soc/veh-1") == [b'{"state": "raised"}'])


async def test_connected_clients_counts_live_connections(
    hub: EmbeddedBroker, connect: ClientFactory, sink: RecordingSink, new_vid: Callable[[], str]
) -> None:
    """connected_clients follows connects and disconnects."""
    first, second = new_vid(), new_vid()
    a = await connect(first)
    await connect(second)
    await eventually(lambda: hub.connected_clients() == 2)

    a.paho.disconnect()
    await sink.wait_for(first, MessageKind.DISCONNECTED)
    assert hub.connected_clients() == 1
