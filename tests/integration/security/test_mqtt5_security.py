"""MQTT 5 clients on the secure hub: logins, ACLs and limits as for 3.1.1, with the reasons MQTT 5 can give."""

import sys
import uuid
from pathlib import Path

from broker.codec import Ack, PacketType, Publish, Reason, Suback, Subscribe, Subscription
from security import CLI
from tests.helpers import eventually

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "broker"))
from wire_client import WireClient


async def test_v5_vehicle_login_acl_and_ingest(hub) -> None:
    """Wrong secret: 0x86; right one: accepted; another vehicle's topics: 0x87; own telemetry: ingested and PUBACKed."""
    made = await hub.security.provision(f"veh-{uuid.uuid4().hex[:8]}", "acme", actor=CLI)
    other = await hub.security.provision(f"veh-{uuid.uuid4().hex[:8]}", "acme", actor=CLI)
    vid = made.vehicle_id
    refused, connack = await WireClient.connect(hub.mqtt_port, vid, username=vid, password=b"wrong")
    assert connack.reason is Reason.BAD_USERNAME_OR_PASSWORD
    await refused.close()
    client, connack = await WireClient.connect(hub.mqtt_port, vid, username=vid, password=made.secret.encode())
    assert connack.reason is Reason.SUCCESS
    await client.send(
        Subscribe(1, [Subscription(f"vehicles/{other.vehicle_id}/#", 1), Subscription(f"vehicles/{vid}/twin/delta", 1)])
    )
    suback = await client.recv()
    assert isinstance(suback, Suback)
    assert suback.reasons == [Reason.NOT_AUTHORIZED, Reason.GRANTED_QOS_1]
    await client.send(Publish(f"vehicles/{other.vehicle_id}/telemetry", b'{"soc": 1}', 1, packet_id=2))
    denied = await client.recv()
    assert isinstance(denied, Ack)
    assert (denied.packet_id, denied.reason) == (2, Reason.NOT_AUTHORIZED)
    await client.send(Publish(f"vehicles/{vid}/telemetry", b'{"soc": 42}', 1, packet_id=3))
    assert await client.recv() == Ack(PacketType.PUBACK, 3)

    async def stored() -> bool:
        return (await hub.service.get_twin(vid)).reported.get("soc") == 42

    await eventually(stored)
    assert "soc" not in (await hub.service.get_twin(other.vehicle_id)).reported
    await client.close()
