"""The real embedded broker on a free port, a recording sink, and real paho clients."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import AsyncIterator, Callable

import pytest
from broker_harness import MAX_PAYLOAD, Client, ClientFactory, RawClient, RecordingSink, eventually
from prometheus_client import CollectorRegistry

from broker import BrokerMetrics, EmbeddedBroker

_ids = itertools.count()


@pytest.fixture
def vid() -> str:
    """A vehicle id no other test uses."""
    return f"veh-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def new_vid() -> Callable[[], str]:
    return lambda: f"veh-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def sink() -> RecordingSink:
    return RecordingSink()


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
async def hub(sink: RecordingSink, registry: CollectorRegistry) -> AsyncIterator[EmbeddedBroker]:
    async with EmbeddedBroker(
        sink, host="127.0.0.1", port=0, max_payload_bytes=MAX_PAYLOAD, metrics=BrokerMetrics(registry)
    ) as broker:
        yield broker


@pytest.fixture
async def connect(hub: EmbeddedBroker) -> AsyncIterator[ClientFactory]:
    """Connects paho clients to the hub; all are disconnected and stopped at teardown."""
    clients: list[Client] = []

    async def make(client_id: str | None = None, *, username: str | None = None) -> Client:
        client = Client(client_id or f"client-{next(_ids)}-{uuid.uuid4().hex[:6]}", username)
        clients.append(client)
        client.paho.connect_async("127.0.0.1", hub.port, keepalive=30)
        client.paho.loop_start()
        await eventually(client.connected.is_set)
        return client

    yield make
    for client in clients:
        client.paho.disconnect()
        await asyncio.to_thread(client.paho.loop_stop)


@pytest.fixture
async def raw_clients() -> AsyncIterator[list[RawClient]]:
    """Raw clients appended here are closed at teardown."""
    clients: list[RawClient] = []
    yield clients
    for client in clients:
        await client.close()
