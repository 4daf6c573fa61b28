"""EMQX's client events under $SYS, as its documentation shows them, become presence items.

EMQX is not installable here: the payloads are the shapes its documentation records
(`$SYS/brokers/{node}/clients/{clientid}/connected|disconnected`).
"""

from cluster import ClusterSettings, Received, inbound_of
from cluster.edge import filters_of
from twin import MessageKind

NODE = "emqx@127.0.0.1"
CONNECTED = (
    b'{"username": "foo", "ts": 1625572213873, "sockport": 1883, "proto_ver": 4, "proto_name": "MQTT",'
    b' "keepalive": 60, "ipaddress": "127.0.0.1", "expiry_interval": 0, "connected_at": 1625572213873,'
    b' "connack": 0, "clientid": "veh-7", "clean_start": true}'
)


def _disconnected(reason: str, clientid: str = "veh-7") -> bytes:
    return (
        b'{"username": "foo", "ts": 1625572213873, "sockport": 1883, "reason": "%s", "proto_ver": 4,'
        b' "proto_name": "MQTT", "ipaddress": "127.0.0.1", "disconnected_at": 1625572213873, "clientid": "%s"}'
        % (reason.encode(), clientid.encode())
    )


def _msg(event: str, payload: bytes, clientid: str = "veh-7") -> Received:
    return Received(f"$SYS/brokers/{NODE}/clients/{clientid}/{event}", payload, 0, 0, 0)


def test_connected_and_disconnected_events_are_presence():
    (connected,) = inbound_of(_msg("connected", CONNECTED), 10.0)
    assert (connected.vehicle_id, connected.kind, connected.received_at) == ("veh-7", MessageKind.CONNECTED, 10.0)
    (lost,) = inbound_of(_msg("disconnected", _disconnected("keepalive_timeout")), 11.0)
    assert (lost.kind, lost.extra) == (MessageKind.DISCONNECTED, {"reason": "connection_lost"})
    (clean,) = inbound_of(_msg("disconnected", _disconnected("normal")), 12.0)
    assert clean.extra == {"reason": "clean"}


def test_a_connection_replaced_by_a_new_one_is_not_a_drop():
    """EMQX reports the old connection of a client that connected again as taken over."""
    assert inbound_of(_msg("disconnected", _disconnected("takenover")), 1.0) == []
    assert inbound_of(_msg("disconnected", _disconnected("discarded")), 1.0) == []


def test_a_subscription_to_the_command_topic_makes_the_vehicle_ready_for_commands():
    payload = b'{"clientid": "veh-7", "username": "foo", "topic": "vehicles/veh-7/commands/+", "ts": 1}'
    (subscribed,) = inbound_of(_msg("subscribed", payload), 1.0)
    assert (subscribed.kind, subscribed.extra) == (MessageKind.SUBSCRIBED, {"commands": "1"})
    other = b'{"clientid": "veh-7", "topic": "vehicles/veh-8/commands/+"}'
    assert inbound_of(_msg("subscribed", other), 1.0) == []
    assert inbound_of(_msg("subscribed", b'{"clientid": "veh-7", "topic": "alerts/#"}'), 1.0) == []


def test_clients_that_are_not_vehicles_and_payloads_not_understood_are_ignored():
    worker = _disconnected("normal", clientid="fleethub w1")
    assert inbound_of(_msg("disconnected", worker, clientid="fleethub w1"), 1.0) == []
    assert inbound_of(_msg("connected", b"not json"), 1.0) == []
    assert inbound_of(Received(f"$SYS/brokers/{NODE}/uptime", b"1", 0, 0, 0), 1.0) == []


def test_workers_subscribe_to_the_events_only_when_told_to():
    assert not any(f.startswith("$SYS") for f in filters_of(ClusterSettings(broker="mqtt://b:1883")))
    emqx = filters_of(ClusterSettings(broker="mqtt://b:1883", presence="emqx"))
    assert "$SYS/brokers/+/clients/+/connected" in emqx
    assert "vehicles/+/status" in emqx
