"""Where the specification is strict, the broker is too: malformed topics and filters, and $SYS statistics."""

from __future__ import annotations

import uuid

import pytest
from broker_harness import RecordingSink, eventually
from wire_client import WireClient

from broker import EmbeddedBroker
from broker.codec import Disconnect, Publish, Reason, Suback, Subscribe, Subscription, Version
from twin.inbound import MessageKind


@pytest.mark.parametrize("topic", ["vehicles/+/telemetry", "depot/#", "a/b+"])
async def test_wildcard_publish_closes_a_v311_connection(
    hub: EmbeddedBroker, sink: RecordingSink, vid: str, topic: str
) -> None:
    """MQTT-3.3.2-2: a PUBLISH whose topic has wildcards gets no PUBACK; the connection ends as a protocol error."""
    client, _ = await WireClient.connect(hub.port, vid, version=Version.V311)
    await client.send(Publish(topic, b"{}", 1, packet_id=1))
    assert await client.closed()
    [gone] = await sink.wait_for(vid, MessageKind.DISCONNECTED)
    assert gone.extra == {"reason": "protocol_error"}
    await client.close()


async def test_wildcard_publish_gets_reason_0x90_in_v5(hub: EmbeddedBroker, vid: str) -> None:
    """MQTT 5 says why: DISCONNECT with Topic Name invalid."""
    client, _ = await WireClient.connect(hub.port, vid)
    await client.send(Publish("depot/+/x", b"{}", 1, packet_id=1))
    assert await client.recv() == Disconnect(Reason.TOPIC_NAME_INVALID)
    await client.close()


@pytest.mark.parametrize(
    ("version", "refused"), [(Version.V311, Reason.UNSPECIFIED_ERROR), (Version.V5, Reason.TOPIC_FILTER_INVALID)]
)
async def test_invalid_filters_are_refused_valid_ones_granted(
    hub: EmbeddedBroker, version: Version, refused: Reason
) -> None:
    """Empty filters, `#` not last, wildcards inside a level: refused in the SUBACK; the valid filter is granted."""
    client, _ = await WireClient.connect(hub.port, f"c-{uuid.uuid4().hex[:6]}", version=version)
    bad = ["", "a/#/b", "a+/b", "$share//x", "$share/g"]
    await client.send(Subscribe(1, [Subscription(f, 1) for f in bad] + [Subscription("depot/ok", 1)]))
    suback = await client.recv()
    assert isinstance(suback, Suback)
    assert suback.reasons == [refused] * len(bad) + [Reason.GRANTED_QOS_1]
    await client.close()


async def test_filter_with_nul_closes_the_connection(hub: EmbeddedBroker) -> None:
    """U+0000 is malformed in any MQTT string (MQTT-1.5.4-2): a v5 client is told 0x81 and disconnected."""
    client, _ = await WireClient.connect(hub.port, f"c-{uuid.uuid4().hex[:6]}")
    topic_filter = b"depot/\x00/x"
    body = b"\x00\x01\x00" + len(topic_filter).to_bytes(2, "big") + topic_filter + b"\x01"
    await client.send_raw(b"\x82" + bytes([len(body)]) + body)
    assert await client.recv() == Disconnect(Reason.MALFORMED_PACKET)
    assert await client.closed()
    await client.close()


async def test_sys_topics_report_broker_statistics(sink: RecordingSink) -> None:
    """$SYS/broker/... carries clients, messages, bytes and uptime, retained, for monitoring tools."""
    async with EmbeddedBroker(sink, host="127.0.0.1", port=0, sys_interval_s=0.2) as hub:
        client, _ = await WireClient.connect(hub.port, "monitor")
        await client.send(Subscribe(1, [Subscription("$SYS/broker/#", 0)]))
        await client.recv()
        seen: dict[str, bytes] = {}

        async def collect() -> None:
            packet = await client.recv()
            if isinstance(packet, Publish):
                seen[packet.topic] = packet.payload

        # The retained values come first (from before this client connected), then fresh ones.
        for _ in range(100):
            await collect()
            if len(seen) >= 9 and seen["$SYS/broker/clients/connected"] == b"1":
                break
        assert seen["$SYS/broker/clients/connected"] == b"1"
        assert seen["$SYS/broker/uptime"].endswith(b" seconds")
        for name in ("messages/received", "messages/sent", "bytes/received", "bytes/sent"):
            assert int(seen[f"$SYS/broker/{name}"]) >= 0
        await eventually(lambda: hub.connected_clients() == 1)
        await client.close()


async def test_v5_publish_with_a_property_of_another_packet_is_a_protocol_error(hub: EmbeddedBroker) -> None:
    """A client's PUBLISH carrying, say, Session Expiry Interval gets DISCONNECT 0x82 instead of being passed on."""
    from broker.codec import Properties

    client, _ = await WireClient.connect(hub.port, f"c-{uuid.uuid4().hex[:6]}")
    await client.send(Publish("depot/x", b"{}", 0, properties=Properties(session_expiry_interval=5)))
    assert await client.recv() == Disconnect(Reason.PROTOCOL_ERROR)
    await client.close()
