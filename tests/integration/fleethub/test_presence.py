"""Presence over real MQTT: stored events, flaps debounced, visible in the API."""

import contextlib
import uuid

import httpx
import pytest

from fleethub.hub import Hub
from tests.helpers import MqttClient, eventually, local_settings

DEBOUNCE_S = 0.5


@pytest.fixture
async def hub(tmp_path):
    settings = local_settings(
        f"sqlite:///{tmp_path}/hub.db",
        {
            "ingest.presence_debounce_s": DEBOUNCE_S,
        },
    )
    async with Hub(settings) as running:
        yield running


@pytest.fixture
async def http(hub):
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{hub.http_port}", timeout=10) as client:
        yield client


@pytest.fixture
def clients(hub):
    made: list[MqttClient] = []

    def make(client_id: str) -> MqttClient:
        client = MqttClient(hub.mqtt_port, client_id)
        made.append(client)
        return client

    yield make
    for client in made:
        with contextlib.suppress(OSError, RuntimeError):
            client.close()


async def _presence(http: httpx.AsyncClient, vid: str) -> dict:
    response = await http.get(f"/api/v1/vehicles/{vid}/presence")
    assert response.status_code == 200, response.text
    return response.json()


async def test_flaps_leave_one_session_and_a_real_drop_becomes_an_event(hub, http, clients) -> None:
    vid = f"veh-{uuid.uuid4().hex[:8]}"
    car = await clients(vid).connect()
    await car.publish_and_wait(f"vehicles/{vid}/telemetry", {"soc": 80})
    first_since = (await _presence(http, vid))["connection"]["since"]
    # Five dropped links, each back well inside the debounce window.
    for _ in range(5):
        car.drop()
        car = await clients(vid).connect()
    await car.publish_and_wait(f"vehicles/{vid}/telemetry", {"soc": 79})
    page = await _presence(http, vid)
    assert [e["connected"] for e in page["items"]] == [True]
    assert page["connection"]["connected"] is True
    assert page["connection"]["since"] == first_since

    car.close()

    async def offline_event() -> bool:
        page = await _presence(http, vid)
        assert [(e["connected"], e.get("reason")) for e in page["items"]] == [(True, None), (False, "clean")]
        assert "reason" not in page["items"][0]
        assert page["connection"]["connected"] is False
        return True

    await eventually(offline_event)
    car = await clients(vid).connect()

    async def back() -> bool:
        page = await _presence(http, vid)
        assert [e["connected"] for e in page["items"]] == [True, False, True]
        newest = (await http.get(f"/api/v1/vehicles/{vid}/presence", params={"order": "desc", "limit": 1})).json()
        assert newest["items"] == page["items"][-1:]
        return True

    await eventually(back)


async def test_presence_of_an_unknown_vehicle_is_404(http) -> None:
    response = await http.get("/api/v1/vehicles/veh-nobody/presence")
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/problem+json")
