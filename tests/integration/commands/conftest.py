import contextlib
import uuid
from collections.abc import AsyncIterator, Callable

import httpx
import pytest

from fleethub import Settings
from fleethub.hub import Hub
from tests.helpers import MqttClient, eventually, local_settings


def hub_settings(db: str, **overrides: object) -> Settings:
    return local_settings(
        f"sqlite:///{db}",
        {
            "commands.resend_interval_s": 0.5,
            **overrides,
        },
    )


@pytest.fixture
def db(tmp_path) -> str:
    return str(tmp_path / "hub.db")


@pytest.fixture
async def hub(db) -> AsyncIterator[Hub]:
    async with Hub(hub_settings(db)) as running:
        yield running


@pytest.fixture
async def http(hub) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{hub.http_port}", timeout=20) as client:
        yield client


@pytest.fixture
def clients() -> Callable[..., MqttClient]:
    made: list[MqttClient] = []

    def make(port: int, client_id: str | None = None, **kw) -> MqttClient:
        client = MqttClient(port, client_id, **kw)
        made.append(client)
        return client

    yield make
    for client in made:
        with contextlib.suppress(OSError, RuntimeError):
            client.close()


@pytest.fixture
def vid() -> str:
    return f"veh-{uuid.uuid4().hex[:8]}"


async def online_vehicle(clients, port: int, vid: str, telemetry: dict | None = None) -> MqttClient:
    """A vehicle with a twin, connected and subscribed to its commands."""
    vehicle = await clients(port, vid).connect()
    await vehicle.publish_and_wait(f"vehicles/{vid}/telemetry", telemetry or {"speed": 0, "ignition": False})
    await vehicle.subscribe(f"vehicles/{vid}/commands/+")
    return vehicle


async def known_offline_vehicle(clients, hub: Hub, vid: str, telemetry: dict | None = None) -> None:
    """A vehicle that has a twin but is not connected (and the hub knows it)."""
    vehicle = await clients(hub.mqtt_port, vid).connect()
    await vehicle.publish_and_wait(f"vehicles/{vid}/telemetry", telemetry or {"speed": 0, "ignition": False})
    vehicle.close()

    async def gone() -> bool:
        assert hub.commands is not None
        return vid not in hub.commands.online_vehicles

    await eventually(gone)


async def answer(vehicle: MqttClient, vid: str, status: str = "succeeded", wait_s: float = 10, **body) -> dict:
    """Take the next command and answer it; returns the command payload (with `id`)."""
    topic, command = await vehicle.next_message("", wait_s=wait_s)
    command_id = topic.rsplit("/", 1)[1]
    assert command["id"] == command_id
    await vehicle.publish_and_wait(f"vehicles/{vid}/commands/{command_id}/result", {"status": status, **body})
    return command
