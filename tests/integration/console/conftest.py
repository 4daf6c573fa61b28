"""Fixtures for the console's server-side tests: a secure hub (auth on) with a fast live feed."""

from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from fleethub.hub import Hub
from security import CLI, Role
from tests.integration.security.conftest import secure_settings


@pytest.fixture
def console_overrides() -> dict[str, Any]:
    return {}


@pytest.fixture
async def hub(tmp_path, console_overrides) -> AsyncIterator[Hub]:
    overrides = {"console.live_interval_s": 0.1, "abuse.message_rate_per_s": 0, **console_overrides}
    async with Hub(secure_settings(str(tmp_path / "hub.db"), **overrides)) as running:
        yield running


@pytest.fixture
async def http(hub) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{hub.http_port}", timeout=10) as client:
        yield client


@pytest.fixture
def user(hub) -> Callable[..., Any]:
    """Create a user with a password; returns the password."""

    async def make(name: str, role: Role, *fleets: str) -> str:
        password = f"pw-{name}-correct-horse"
        await hub.security.add_user(name, role, fleets or ("*",), actor=CLI, password=password)
        return password

    return make


async def login(http: httpx.AsyncClient, name: str, password: str) -> str:
    """Log in (the client keeps the cookie); returns the CSRF token."""
    response = await http.post("/api/v1/session", json={"username": name, "password": password})
    assert response.status_code == 200, response.text
    return response.json()["csrf_token"]
