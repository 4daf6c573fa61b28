# The running hub (on SQLite and on PostgreSQL), its HTTP client and an MQTT client.
from collections.abc import AsyncIterator

import pytest

from fleethub.hub import Hub
from tests.integration.maintenance.conftest import http, hub_settings, mqtt, vid

__all__ = ["http", "hub", "mqtt", "vid"]


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
async def hub(request, tmp_path) -> AsyncIterator[Hub]:
    url = f"sqlite:///{tmp_path}/hub.db" if request.param == "sqlite" else str(request.getfixturevalue("pg_url"))
    async with Hub(hub_settings(url)) as running:
        yield running
