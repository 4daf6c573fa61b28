"""A secure hub (tokens required) with an admin token, for the API's convention and hardening tests."""

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from fleethub.hub import Hub
from security import CLI, Role
from tests.integration.security.conftest import secure_settings


@pytest.fixture
async def secure_hub(tmp_path) -> AsyncIterator[Hub]:
    # A short presence debounce so a test's reconnect becomes presence events quickly.
    settings = secure_settings(str(tmp_path / "hub.db"), **{"ingest.presence_debounce_s": 0.2})
    async with Hub(settings) as running:
        yield running


@pytest.fixture
async def admin(secure_hub) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client that sends a global admin's token."""
    await secure_hub.security.add_user("root", Role.ADMIN, ("*",), actor=CLI)
    token = (await secure_hub.security.issue_token("root", actor=CLI)).secret
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{secure_hub.http_port}", headers={"Authorization": f"Bearer {token}"}, timeout=10
    ) as client:
        yield client


def walk_nulls(value: Any, path: str = "") -> list[str]:
    """Paths of every null in a JSON value."""
    if value is None:
        return [path]
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in walk_nulls(v, f"{path}.{k}")]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in walk_nulls(v, f"{path}[{i}]")]
    return []
