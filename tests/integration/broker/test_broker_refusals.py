"""Messages the hub refuses are dropped, explained to the vehicle, counted, and harm no one else."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import datetime

import pytest
from broker_harness import MAX_PAYLOAD, ClientFactory, RawClient, RecordingSink, eventually, publish_packet
from prometheus_client import CollectorRegistry

from broker import EmbeddedBroker
from twin.inbound import MessageKind


@pytest.mark.parametrize(
    ("suffix", "payload", "reason"),
    [
        ("bogus", b"{}", "unknown_topic"),
        ("twin/get/extra", b"{}", "unknown_topic"),
        ("commands/c1/result/extra", b"{}", "unknown_topic"),
        ("twin/delta", b'{"version": 1, "delta": {}}', "topic_not_allowed"),
        ("twin/doc", b"{}", "topic_not_allowed"),
        ("errors", b"{}", "topic_not_allowed"),
        ("commands/c1", b'{"name": "unlock"}', "topic_not_allowed"),
        ("telemetry", b"x" * (MAX_PAYLOAD + 1), "payload_too_large"),
    ],
)
async def test_refused_message_is_explained_not_routed_and_acked(
    connect: ClientFactory,
    sink: RecordingSink,
    registry: CollectorRegistry,
    vid: str,
    suffix: str,
    payload: bytes,
    reason: str,
) -> None:
    """The vehicle gets a JSON error on its errors topic; nobody gets the message; PUBACK comes at once."""
    topic = f"vehicles/{vid}/{suffix}"
    errors_topic = f"vehicles/{vid}/errors"
    watcher = await connect("watcher/1")
    await watcher.subscribe("#")
    vehicle = await connect(vid)
    await vehicle.subscribe(errors_topic)

    mid = vehicle.publish(topic, payload, qos=1)

    await eventually(lambda: len(vehicle.on(errors_topic)) == 1)
    notice = json.loads(vehicle.on(errors_topic)[0])
    assert notice["error"] == reason
    assert notice["topic"] == topic
    assert notice["detail"]
    assert datetime.fromisoformat(notice["ts"]).utcoffset() is not None
    await eventually(lambda: vehicle.is_acked(mid))
    # The watcher does get the notice, so it would have seen the message had it been routed.
    await eventually(lambda: len(watcher.on(errors_topic)) >= 1)
    await asyncio.sleep(0.05)
    assert payload not in watcher.on(topic), "a refused message was routed"
    assert sink.of(vid, MessageKind.TELEMETRY) == []
    assert [i.kind for i in sink.of(vid)] == [MessageKind.CONNECTED, MessageKind.SUBSCRIBED]
    assert registry.get_sample_value("fleethub_mqtt_messages_refused_total", {"reason": reason}) == 1


async def test_broker_keeps_serving_after_refusals(
    connect: ClientFactory, sink: RecordingSink, new_vid: Callable[[], str]
) -> None:
    """The refused sender and other vehicles go on publishing normally."""
    bad, good = new_vid(), new_vid()
    offender = await connect(bad)
    bystander = await connect(good)
    for _ in range(3):
        offender.publish(f"vehicles/{bad}/twin/delta", b"{}", qos=1)
        offender.publish(f"vehicles/{bad}/telemetry", b"x" * (MAX_PAYLOAD * 2), qos=0)

    offender.publish(f"vehicles/{bad}/telemetry", b'{"ok": 1}', qos=0)
    bystander.publish(f"vehicles/{good}/telemetry", b'{"ok": 2}', qos=0)

    [mine] = await sink.wait_for(bad, MessageKind.TELEMETRY)
    [theirs] = await sink.wait_for(good, MessageKind.TELEMETRY)
    assert mine.payload == b'{"ok": 1}'
    assert theirs.payload == b'{"ok": 2}'


async def test_invalid_vehicle_id_is_counted_and_dropped(
    connect: ClientFactory, sink: RecordingSink, registry: CollectorRegistry
) -> None:
    """A topic under vehicles/ without a valid id is refused; there is no errors topic to answer on."""
    watcher = await connect("watcher/2")
    await watcher.subscribe("#")
    client = await connect("odd/client")
    mid = client.publish("vehicles/not a vehicle!/telemetry", b"{}", qos=1)

    await eventually(lambda: client.is_acked(mid))
    await asyncio.sleep(0.1)
    assert watcher.received == []
    assert sink.items == []
    assert registry.get_sample_value("fleethub_mqtt_messages_refused_total", {"reason": "unknown_topic"}) == 1


async def test_dollar_topics_are_refused_without_cutting_the_client_off(
    connect: ClientFactory, sink: RecordingSink, registry: CollectorRegistry, vid: str
) -> None:
    """Publishing on $SYS is refused, and unlike plain amqtt the client keeps being routed."""
    client = await connect(vid)
    client.publish("$SYS/broker/uptime", b"0", qos=0)
    client.publish(f"vehicles/{vid}/telemetry", b'{"after": true}', qos=0)

    [item] = await sink.wait_for(vid, MessageKind.TELEMETRY)
    assert item.payload == b'{"after": true}'
    assert registry.get_sample_value("fleethub_mqtt_messages_refused_total", {"reason": "topic_not_allowed"}) == 1


async def test_empty_publish_topic_closes_the_connection(
    hub: EmbeddedBroker, sink: RecordingSink, raw_clients: list[RawClient], vid: str
) -> None:
    """A PUBLISH with an empty topic is a protocol error: the client is disconnected."""
    raw = await RawClient.connect(hub.port, vid)
    raw_clients.append(raw)
    await raw.publish("", b"{}")

    assert await raw.closed_by_broker()
    [gone] = await sink.wait_for(vid, MessageKind.DISCONNECTED)
    assert gone.extra == {"reason": "protocol_error"}


async def test_huge_packet_closes_the_connection_before_it_is_buffered(
    hub: EmbeddedBroker,
    sink: RecordingSink,
    registry: CollectorRegistry,
    raw_clients: list[RawClient],
    vid: str,
) -> None:
    """A payload far beyond the limit is not read into memory; the sender is cut off and it is counted."""
    raw = await RawClient.connect(hub.port, vid)
    raw_clients.append(raw)
    # Only the header and a little of the payload are sent: the broker must decide before the rest arrives.
    header = publish_packet(f"vehicles/{vid}/telemetry", b"x" * 10_000_000)[:64]
    raw.writer.write(header)
    await raw.writer.drain()

    assert await raw.closed_by_broker()
    [gone] = await sink.wait_for(vid, MessageKind.DISCONNECTED)
    assert gone.extra == {"reason": "protocol_error"}
    assert registry.get_sample_value("fleethub_mqtt_messages_refused_total", {"reason": "payload_too_large"}) == 1


async def test_will_on_a_vehicle_topic_is_never_published(
    hub: EmbeddedBroker, connect: ClientFactory, sink: RecordingSink, raw_clients: list[RawClient], vid: str
) -> None:
    """A will aimed at vehicles/ would bypass the rules, so it is dropped; wills elsewhere still fire."""
    watcher = await connect("watcher/3")
    await watcher.subscribe("#")
    sneaky = await RawClient.connect(hub.port, vid, will=(f"vehicles/{vid}/twin/delta", b'{"delta": {}}'))
    honest = await RawClient.connect(hub.port, "tracker/9", will=("depot/north/lost", b"tracker/9"))
    await sneaky.close()
    await honest.close()

    await eventually(lambda: watcher.on("depot/north/lost") == [b"tracker/9"])
    await sink.wait_for(vid, MessageKind.DISCONNECTED)
    await asyncio.sleep(0.05)
    assert watcher.on(f"vehicles/{vid}/twin/delta") == []
