"""Worker mode: a vehicle's birth message published before any worker subscribed is lost with
Mosquitto (nobody was subscribed), yet its twin must not say "offline" while it reports.

Real Mosquitto, a worker, PostgreSQL: the vehicle connects and announces itself before the
worker starts; its telemetry afterwards marks it connected; its goodbye marks it offline,
and its next message connected again.
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from tests.e2e.test_scale import Vehicle, _eventually, _owners, _stop, _wind_down, _worker, mosquitto

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

__all__ = ["mosquitto"]


def test_a_vehicle_that_reports_is_connected_even_when_its_birth_went_unseen(
    mosquitto: int, pg_url: str, run_hub, tmp_path: Path
) -> None:
    vehicle = Vehicle(mosquitto, "early-1")  # connects and publishes "online": no worker hears it
    worker = None
    try:
        worker, http = _worker(run_hub, tmp_path, mosquitto, pg_url, "a")
        _eventually(lambda: _owners(pg_url) == {"a": 16}, 20, "worker a holds every partition")
        url = f"http://127.0.0.1:{http}/api/v1/vehicles/early-1/twin"

        def connected() -> bool | None:
            resp = httpx.get(url)
            return resp.json()["connection"]["connected"] if resp.status_code == 200 else None

        now = time.time()
        vehicle.send(1, 50.0, now)
        _eventually(lambda: connected() is True, 30, "the reporting vehicle is connected")
        vehicle.client.publish("vehicles/early-1/status", b"offline-clean", qos=1).wait_for_publish(10)
        _eventually(lambda: connected() is False, 30, "its goodbye marks it offline")
        vehicle.send(2, 51.0, now + 1)
        _eventually(lambda: connected() is True, 30, "its next message marks it connected again")
        # Worker mode in /metrics: every partition here, the messages taken directly.
        metrics = httpx.get(f"http://127.0.0.1:{http}/metrics").text
        assert "fleethub_cluster_partitions_held 16.0" in metrics
        assert "fleethub_cluster_broker_connected 1.0" in metrics
        direct = [
            line for line in metrics.splitlines() if line.startswith('fleethub_cluster_messages_total{path="direct"}')
        ]
        assert direct
        assert float(direct[0].split()[-1]) == 3  # two readings and the goodbye (the birth went unseen)
    finally:
        _wind_down([vehicle], a=worker)
    assert worker is not None  # started in the try, which ended without an error
    _stop(worker)
