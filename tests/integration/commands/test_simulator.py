"""The simulator's vehicles against a real hub: commands answered, and held through an offline period."""

import asyncio
import uuid

from firmware_sim import Fleet, SimConfig
from tests.helpers import eventually


def _config(port: int) -> SimConfig:
    return SimConfig(
        vehicles=3,
        interval_s=60.0,
        port=port,
        prefix=f"s{uuid.uuid4().hex[:5]}-",
        seed=11,
        ramp_s=0.2,
        reconnect_min_s=0.1,
        reconnect_max_s=0.3,
    )


async def test_a_simulated_vehicle_gets_its_command_after_an_offline_period(hub, http):
    """A command for a vehicle in an offline period waits as `queued` and is answered once it is back."""
    config = _config(hub.mqtt_port)
    vid = config.vehicle_ids()[1]
    async with Fleet(config) as fleet:
        async with asyncio.timeout(10):
            await fleet.wait_connected()
        await eventually(lambda: _twin_exists(http, vid))
        answered = await http.post(f"/api/v1/vehicles/{vid}/commands", params={"wait": "10s"}, json={"name": "lock"})
        assert answered.json()["state"] == "succeeded"
        assert answered.json()["result"] == {"doors": {"locked": True}}

        fleet.take_offline(vid, 1.5)
        await eventually(lambda: _offline(hub, vid))
        created = await http.post(f"/api/v1/vehicles/{vid}/commands", json={"name": "honk", "args": {"times": 3}})
        assert created.json()["state"] == "queued"
        done = await http.get(created.headers["location"], params={"wait": "15s"})
        assert done.json()["state"] == "succeeded"
        assert done.json()["detail"] == "honked 3 time(s)"
        assert [t["state"] for t in done.json()["history"]] == ["queued", "sent", "succeeded"]

        refused = await http.post(f"/api/v1/vehicles/{vid}/commands", params={"wait": "10s"}, json={"name": "fly"})
        assert refused.json()["state"] == "rejected"
        assert "unknown command" in refused.json()["detail"]


async def _twin_exists(http, vid: str) -> bool:
    return (await http.get(f"/api/v1/vehicles/{vid}/twin")).status_code == 200


async def _offline(hub, vid: str) -> bool:
    return vid not in hub.commands.online_vehicles
