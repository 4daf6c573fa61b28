"""Fixtures for the security tests: a PostgreSQL for the store contract, and secure hubs."""

import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry

from fleethub.hub import Hub
from security import CLI, Role
from tests.helpers import local_settings
from tests.integration.security.client import Client


def secure_settings(db: str, **overrides: Any):
    """The hub's own defaults (anonymous refused, tokens required) on free local ports."""
    return local_settings(f"sqlite:///{db}", overrides, dev=False)


@pytest.fixture
async def hub(tmp_path) -> AsyncIterator[Hub]:
    async with Hub(secure_settings(str(tmp_path / "hub.db"), **{"abuse.message_burst": 20})) as running:
        yield running


@pytest.fixture
def clients(hub) -> Any:
    made: list[Client] = []

    def make(client_id: str | None = None, **kw: Any) -> Client:
        client = Client(kw.pop("port", hub.mqtt_port), client_id, **kw)
        made.append(client)
        return client

    yield make
    for client in made:
        with contextlib.suppress(Exception):
            client.close()


@pytest.fixture
async def http(hub) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{hub.http_port}", timeout=10) as client:
        yield client


@pytest.fixture
def token_for(hub) -> Callable[..., Any]:
    """Create a user with a role and fleets; returns an API token for it."""

    async def make(name: str, role: Role, *fleets: str, ttl_s: float | None = None) -> str:
        await hub.security.add_user(name, role, fleets or ("*",), actor=CLI)
        return (await hub.security.issue_token(name, actor=CLI, ttl_s=ttl_s)).secret

    return make


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def metric(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return registry.get_sample_value(name, labels) or 0.0
