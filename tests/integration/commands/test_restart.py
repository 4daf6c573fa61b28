"""Commands survive a hub restart on either store: sent ones are sent again and their result accepted."""

import httpx
import pytest

from fleethub.hub import Hub
from tests.helpers import eventually
from tests.integration.commands.conftest import answer, hub_settings, online_vehicle

BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


@pytest.fixture(params=BACKENDS)
def store_url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/hub.db"
    return request.getfixturevalue("pg_url")


def http_of(hub: Hub) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=f"http://127.0.0.1:{hub.http_port}", timeout=20)


async def test_restart_between_sent_and_result(store_url, clients, vid):
    """A command sent but unanswered when the hub stops is `sent` after the restart, sent again, and completed."""
    settings = hub_settings("unused.db", **{"store.url": store_url, "commands.resend_interval_s": 60})
    async with Hub(settings) as hub, http_of(hub) as http:
        vehicle = await online_vehicle(clients, hub.mqtt_port, vid)
        created = (await http.post(f"/api/v1/vehicles/{vid}/commands", json={"name": "unlock"})).json()
        _, first = await vehicle.next_message("")
        assert (first["id"], first["attempt"]) == (created["id"], 1)
        queued = (await http.post(f"/api/v1/vehicles/{vid}/commands", json={"name": "honk", "ttl_s": 600})).json()
        _, honk = await vehicle.next_message("")
        assert honk["id"] == queued["id"]
        vehicle.drop()

    async with Hub(settings) as hub, http_of(hub) as http:
        url = f"/api/v1/vehicles/{vid}/commands/{created['id']}"
        assert (await http.get(url)).json()["state"] == "sent"
        vehicle = await clients(hub.mqtt_port, vid).connect()
        await vehicle.subscribe(f"vehicles/{vid}/commands/+")
        seen = {}
        while len(seen) < 2:
            topic, command = await vehicle.next_message("")
            seen[command["id"]] = command
            await vehicle.publish_and_wait(f"{topic}/result", {"status": "succeeded", "detail": "after restart"})
        assert seen[created["id"]]["attempt"] >= 2

        async def done():
            got = (await http.get(url)).json()
            return got if got["state"] == "succeeded" else None

        got = await eventually(done)
        assert [t["state"] for t in got["history"]] == ["queued", "sent", "succeeded"]
        assert got["detail"] == "after restart"

    async with Hub(settings) as hub, http_of(hub) as http:
        listed = (await http.get(f"/api/v1/vehicles/{vid}/commands")).json()["items"]
        assert [c["state"] for c in listed] == ["succeeded", "succeeded"]


async def test_queued_commands_wait_across_a_restart(db, clients, vid):
    """A command queued for an offline vehicle is delivered by the next hub when the vehicle comes back."""
    settings = hub_settings(db)
    async with Hub(settings) as hub, http_of(hub) as http:
        vehicle = await clients(hub.mqtt_port, vid).connect()
        await vehicle.publish_and_wait(f"vehicles/{vid}/telemetry", {"speed": 0})
        vehicle.close()
        await eventually(lambda: _offline(hub, vid))
        created = (await http.post(f"/api/v1/vehicles/{vid}/commands", json={"name": "lock"})).json()
        assert created["state"] == "queued"

    async with Hub(settings) as hub, http_of(hub) as http:
        vehicle = await online_vehicle(clients, hub.mqtt_port, vid)
        command = await answer(vehicle, vid)
        assert command["id"] == created["id"]

        async def done():
            got = (await http.get(f"/api/v1/vehicles/{vid}/commands/{created['id']}")).json()
            return got["state"] == "succeeded"

        await eventually(done)


async def _offline(hub: Hub, vid: str) -> bool:
    assert hub.commands is not None
    return vid not in hub.commands.online_vehicles
