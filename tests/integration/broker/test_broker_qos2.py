"""QoS 2 PUBLISH: PUBREC only after commit, exactly once per packet id, and QoS 2 delivery to subscribers."""

from __future__ import annotations

import asyncio
import uuid

from broker_harness import PUBCOMP, PUBREC, PUBREL, ClientFactory, RawClient, RecordingSink, ack_packet, eventually

from broker import EmbeddedBroker
from twin.inbound import ACCEPTED, MessageKind


async def test_qos2_telemetry_gets_pubrec_only_after_commit(
    hub: EmbeddedBroker, sink: RecordingSink, raw_clients: list[RawClient], vid: str
) -> None:
    """PUBREC waits for the ingest ack, as PUBACK does for QoS 1; PUBREL is answered with PUBCOMP."""
    raw = await RawClient.connect(hub.port, vid)
    raw_clients.append(raw)
    await raw.publish(f"vehicles/{vid}/telemetry", b'{"soc": 50}', qos=2, packet_id=7)

    [item] = await sink.wait_for(vid, MessageKind.TELEMETRY)
    assert (item.qos, item.payload) == (2, b'{"soc": 50}')
    assert item.ack is not None
    assert await raw.nothing_within(0.3), "PUBREC sent before the data was committed"

    item.ack.set_result(ACCEPTED)
    assert await raw.read_packet() == ack_packet(PUBREC, 7)
    await raw.send(ack_packet(PUBREL, 7))
    assert await raw.read_packet() == ack_packet(PUBCOMP, 7)


async def test_qos2_resend_is_ingested_once(
    hub: EmbeddedBroker, sink: RecordingSink, raw_clients: list[RawClient], vid: str
) -> None:
    """A DUP PUBLISH with a packet id still in flight (before or after PUBREC) is not handed to ingest again."""
    raw = await RawClient.connect(hub.port, vid)
    raw_clients.append(raw)
    topic = f"vehicles/{vid}/telemetry"
    await raw.publish(topic, b'{"seq": 1}', qos=2, packet_id=9)
    [item] = await sink.wait_for(vid, MessageKind.TELEMETRY)
    await raw.publish(topic, b'{"seq": 1}', qos=2, packet_id=9, dup=True)
    assert await raw.nothing_within(0.3), "a resend got PUBREC before the data was committed"
    assert item.ack is not None
    item.ack.set_result(ACCEPTED)
    assert await raw.read_packet() == ack_packet(PUBREC, 9)

    await raw.publish(topic, b'{"seq": 1}', qos=2, packet_id=9, dup=True)
    assert await raw.read_packet() == ack_packet(PUBREC, 9)
    await raw.send(ack_packet(PUBREL, 9))
    assert await raw.read_packet() == ack_packet(PUBCOMP, 9)
    assert await raw.ping()
    assert len(sink.of(vid, MessageKind.TELEMETRY)) == 1

    # Once released, the packet id is free for a new message.
    await raw.publish(topic, b'{"seq": 2}', qos=2, packet_id=9)
    await sink.wait_for(vid, MessageKind.TELEMETRY, count=2)


async def test_unacked_qos2_is_forgotten_when_the_client_leaves(
    hub: EmbeddedBroker, sink: RecordingSink, raw_clients: list[RawClient], vid: str
) -> None:
    """With no PUBREC sent the client still owns the message: after it reconnects its resend is ingested again."""
    raw = await RawClient.connect(hub.port, vid, clean=False)
    raw_clients.append(raw)
    topic = f"vehicles/{vid}/telemetry"
    await raw.publish(topic, b'{"seq": 3}', qos=2, packet_id=11)
    [first] = await sink.wait_for(vid, MessageKind.TELEMETRY)
    await raw.close()
    await sink.wait_for(vid, MessageKind.DISCONNECTED)
    assert first.ack is not None
    assert first.ack.cancelled()

    again = await RawClient.connect(hub.port, vid, clean=False)
    raw_clients.append(again)
    await again.publish(topic, b'{"seq": 3}', qos=2, packet_id=11, dup=True)
    [_, second] = await sink.wait_for(vid, MessageKind.TELEMETRY, count=2)
    assert second.ack is not None
    second.ack.set_result(ACCEPTED)
    assert await again.read_packet() == ack_packet(PUBREC, 11)


async def test_pubrel_for_an_unknown_packet_id_is_completed(
    hub: EmbeddedBroker, raw_clients: list[RawClient], vid: str
) -> None:
    """A client finishing a QoS 2 flow after a reconnect gets its PUBCOMP even if the broker forgot the id."""
    raw = await RawClient.connect(hub.port, vid)
    raw_clients.append(raw)
    await raw.send(ack_packet(PUBREL, 42))
    assert await raw.read_packet() == ack_packet(PUBCOMP, 42)


async def test_qos2_is_delivered_to_a_qos2_subscriber_exactly_once(
    hub: EmbeddedBroker, connect: ClientFactory, raw_clients: list[RawClient]
) -> None:
    """A QoS 2 message on a plain topic reaches a QoS 2 subscriber once, through the whole four-packet flow."""
    topic = f"depot/{uuid.uuid4().hex[:8]}/gate"
    subscriber = await connect()
    await subscriber.subscribe(topic, qos=2)
    raw = await RawClient.connect(hub.port, f"gate-{uuid.uuid4().hex[:6]}")
    raw_clients.append(raw)
    await raw.publish(topic, b"open", qos=2, packet_id=1)
    assert await raw.read_packet() == ack_packet(PUBREC, 1)
    await raw.send(ack_packet(PUBREL, 1))
    assert await raw.read_packet() == ack_packet(PUBCOMP, 1)

    await eventually(lambda: len(subscriber.messages(topic)) == 1)
    await asyncio.sleep(0.2)
    [message] = subscriber.messages(topic)
    assert (message.payload, message.qos) == (b"open", 2)
