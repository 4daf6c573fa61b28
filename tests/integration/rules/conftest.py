import contextlib
import uuid
from collections.abc import AsyncIterator, Callable

import httpx
import pytest

from fleethub.hub import Hub
from tests.helpers import MqttClient, local_settings


def hub_settings(store_url: str, **overrides: object):
    return local_settings(
        store_url,
        {
            "store.pg_pool_min_size": 1,
            "store.pg_pool_max_size": 4,
            # Rules see presence after the debounce; a short one keeps connected() tests quick.
            "ingest.presence_debounce_s": 0.3,
            **overrides,
        },
    )


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store_url(request, tmp_path) -> str:
    """The hub's database: every rules test runs on both backends, each on a fresh one."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/hub.db"
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
async def hub(store_url) -> AsyncIterator[Hub]:
    async with Hub(hub_settings(store_url)) as running:
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
