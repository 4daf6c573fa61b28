import asyncio
import contextlib
import random
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest

from firmware_sim import Vehicle, get_city
from fleethub.hub import Hub
from tests.helpers import MqttClient, local_settings


def hub_settings(store_url: str, **overrides: object):
    return local_settings(
        store_url,
        {
            "store.pg_pool_min_size": 1,
            "store.pg_pool_max_size": 4,
            "maintenance.check_interval_s": 0.2,
            **overrides,
        },
    )


@pytest.fixture
async def hub(tmp_path) -> AsyncIterator[Hub]:
    async with Hub(hub_settings(f"sqlite:///{tmp_path}/hub.db")) as running:
        yield running


@pytest.fixture
async def http(hub) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{hub.http_port}", timeout=20) as client:
        yield client


@pytest.fixture
async def mqtt(hub) -> AsyncIterator[MqttClient]:
    client = MqttClient(hub.mqtt_port)
    await client.connect()
    yield client
    with contextlib.suppress(OSError, RuntimeError):
        client.close()


@pytest.fixture
def vid() -> str:
    return f"veh-{uuid.uuid4().hex[:8]}"


class SimDriver:
    """A simulated vehicle (firmware_sim.Vehicle) driven through simulated time, its telemetry sent over MQTT.

    Its trackers report no odometer (`with_odometer=False`), so the hub derives distance from GPS.
    """

    def __init__(self, client: MqttClient, vid: str, start: float, *, seed: int = 7, interval_s: float = 3.0) -> None:
        self.client, self.vid, self.t = client, vid, start
        self.vehicle = Vehicle(get_city("mexico-city"), random.Random(seed), start, report_interval_s=interval_s)
        self.interval_s = interval_s
        self.start_odometer = self.vehicle.odometer_km
        self.sent = 0

    @property
    def travelled_km(self) -> float:
        return self.vehicle.odometer_km - self.start_odometer

    async def drive(self, seconds: float, *, with_odometer: bool = False) -> dict:
        last = None
        end = self.t + seconds
        while self.t < end:
            self.t += self.interval_s
            self.vehicle.step(self.t)
            msg = self.vehicle.telemetry(self.t)
            if not with_odometer:
                msg.pop("odometer_km")
            last = self.client.publish(f"vehicles/{self.vid}/telemetry", msg)
            self.sent += 1
        if last is not None:
            await asyncio.to_thread(last.wait_for_publish, 60)
            assert last.is_published()
        return msg
