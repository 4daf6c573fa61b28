"""Fixtures for the simulator's integration tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.firmware_sim.harness import MOSQUITTO, Mosquitto


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    """A Mosquitto broker of its own on a free port, stopped at the end of the test."""
    if not Path(MOSQUITTO).exists():
        pytest.skip("the mosquitto binary is not installed")
    broker = Mosquitto(tmp_path)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()
