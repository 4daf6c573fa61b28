import contextlib

import httpx
import pytest

from fleethub.hub import Hub
from tests.helpers import MqttClient, local_settings


@pytest.fixture
async def hub(tmp_path):
    settings = local_settings(f"sqlite:///{tmp_path}/hub.db")
    async with Hub(settings) as running:
        yield running


@pytest.fixture
async def http(hub):
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{hub.http_port}", timeout=10) as client:
        yield client


@pytest.fixture
def clients(hub):
    made: list[MqttClient] = []

    def make(client_id: str | None = None, **kw) -> MqttClient:
        client = MqttClient(hub.mqtt_port, client_id, **kw)
        made.append(client)
        return client

    yield make
    for client in made:
        # A client the test dropped on purpose has no link left to close.
        with contextlib.suppress(OSError, RuntimeError):
            client.close()
