import contextlib
import uuid
from collections.abc import AsyncIterator, Callable

import httpx
import pytest

from fleethub.hub import Hub
from fleethub.settings import load_settings
from tests.helpers import MqttClient


def hub_settings(db: str, **overrides: object):
    return load_settings(
        environ={},
        overrides={
            "mqtt.host": "127.0.0.1",
            "mqtt.port": 0,
            "http.host": "127.0.0.1",
            "http.port": 0,
            "store.url": f"sqlite:///{db}",
            # Development mode, explicitly: these tests use anonymous MQTT clients and no API tokens.
            "mqtt.allow_anonymous": True,
            "auth.enabled": False,
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
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{hub.http_port}", timeout=10) as client:
        yield client


@pytest.fixture
def clients() -> Callable[..., MqttClient]:
    made: list[MqttClient] = []

    def make(port: int, client_id: str | None = None) -> MqttClient:
        client = MqttClient(port, client_id)
        made.append(client)
        return client

    yield make
    for client in made:
        with contextlib.suppress(OSError, RuntimeError):
            client.close()


@pytest.fixture
def vid() -> str:
    return f"veh-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def rule_name() -> str:
    return f"r-{uuid.uuid4().hex[:8]}"
