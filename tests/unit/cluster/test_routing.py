"""What a broker message becomes for the ingest pipeline, and which partition a vehicle is in."""

import pytest

from cluster import Received, fence_of, inbound_of, parse_broker_url, partition_of
from kernel import ConfigError
from twin import MessageKind


def _msg(topic: str, payload: bytes = b"{}", qos: int = 1) -> Received:
    return Received(topic, payload, qos, mid=7, generation=1)


def test_vehicle_topics_become_their_kinds() -> None:
    """Telemetry, twin requests and command results keep their vehicle, payload and QoS."""
    (t,) = inbound_of(_msg("vehicles/veh-1/telemetry", b'{"soc": 1}'), 100.0)
    assert (t.vehicle_id, t.kind, t.payload, t.qos, t.received_at) == (
        "veh-1",
        MessageKind.TELEMETRY,
        b'{"soc": 1}',
        1,
        100.0,
    )
    assert inbound_of(_msg("vehicles/veh-1/twin/get"), 1.0)[0].kind is MessageKind.TWIN_GET
    assert inbound_of(_msg("vehicles/veh-1/twin/rejected"), 1.0)[0].kind is MessageKind.TWIN_REJECTED
    (r,) = inbound_of(_msg("vehicles/veh-1/commands/c-42/result"), 1.0)
    assert (r.kind, r.subtopic) == (MessageKind.COMMAND_RESULT, "c-42")


def test_birth_and_will_are_presence() -> None:
    """'online' is a connect plus a command subscription; 'offline' a drop; anything else nothing."""
    online = inbound_of(_msg("vehicles/v/status", b"online"), 1.0)
    assert [i.kind for i in online] == [MessageKind.CONNECTED, MessageKind.SUBSCRIBED]
    assert online[1].extra == {"commands": "1"}
    (drop,) = inbound_of(_msg("vehicles/v/status", b"offline"), 1.0)
    assert (drop.kind, drop.extra["reason"]) == (MessageKind.DISCONNECTED, "connection_lost")
    (bye,) = inbound_of(_msg("vehicles/v/status", b"offline-clean"), 1.0)
    assert bye.extra["reason"] == "clean"
    assert inbound_of(_msg("vehicles/v/status", b"maybe"), 1.0) == []


@pytest.mark.parametrize(
    "topic",
    ["vehicles/v/other", "alerts/x", "vehicles/bad id/telemetry", "vehicles/v/telemetry/extra", "vehicles//telemetry"],
)
def test_other_topics_are_not_ours(topic: str) -> None:
    """A topic outside the vehicle contract yields nothing (the worker acknowledges and drops it)."""
    assert inbound_of(_msg(topic), 1.0) == []


def test_partitions_are_stable_and_spread() -> None:
    """The same id always lands in the same partition, and 10,000 ids fill 16 partitions evenly."""
    assert partition_of("veh-0042", 64) == partition_of("veh-0042", 64)
    counts = [0] * 16
    for n in range(10_000):
        counts[partition_of(f"veh-{n}", 16)] += 1
    assert min(counts) > 500
    assert max(counts) < 750


def test_broker_urls() -> None:
    """mqtt:// and mqtts:// with default ports; anything else is a configuration error naming the setting."""
    assert parse_broker_url("mqtt://broker:1884") == ("broker", 1884, False)
    assert parse_broker_url("mqtts://broker") == ("broker", 8883, True)
    assert parse_broker_url("mqtt://broker") == ("broker", 1883, False)
    with pytest.raises(ConfigError, match=r"cluster\.broker"):
        parse_broker_url("http://broker")


def test_fence_names_worker_count_and_tokens() -> None:
    """The fence value the triggers read: JSON with the worker, the partition count and each token."""
    assert fence_of("w1", 8, {3: 5, 1: 2}) == '{"w":"w1","k":8,"t":{"1":2,"3":5}}'
