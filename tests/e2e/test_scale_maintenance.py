"""Worker mode: the fleet-wide maintenance due list is current on a node that owns no vehicle.

Real Mosquitto, a worker and an API node, PostgreSQL. The vehicle connects after both
started, so the API node has never seen it; its due list reads the vehicle's twin (meters)
and interval from the database, and follows the owner's commits. The owner's own due list
is the positive control: both must say the same.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest

from tests.e2e.test_scale import Vehicle, _eventually, _owners, _rows, _stop, _wind_down, _worker, mosquitto

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

__all__ = ["mosquitto"]

FAST = {"FLEETHUB_MAINTENANCE_CHECK_INTERVAL_S": "0.5"}


def _due(base: str, vid: str) -> list[tuple[str, float | None]]:
    listed = httpx.get(f"{base}/maintenance/due", params={"limit": 500}, timeout=30)
    assert listed.status_code == 200, listed.text
    return [(d["status"], d.get("odometer_km")) for d in listed.json()["items"] if d["vehicle_id"] == vid]


def test_the_due_list_of_an_api_node_has_the_meters_the_owner_committed(
    mosquitto: int, pg_url: str, run_hub, tmp_path: Path
) -> None:
    owner, http_owner = _worker(run_hub, tmp_path, mosquitto, pg_url, "a", env=FAST)
    api, http_api = _worker(run_hub, tmp_path, mosquitto, pg_url, "api", role="api", env=FAST)
    at_owner, at_api = f"http://127.0.0.1:{http_owner}/api/v1", f"http://127.0.0.1:{http_api}/api/v1"
    _eventually(lambda: _owners(pg_url) == {"a": 16}, 20, "worker a holds every partition")
    schedule = {"name": "Oil", "every_km": 1000, "due_soon_km": 100}
    made = httpx.put(f"{at_api}/maintenance/schedules/oil", json=schedule, timeout=30)
    assert made.status_code == 201, made.text
    vehicle = Vehicle(mosquitto, "mt-1")

    def odometer(seq: int, km: float) -> None:
        payload = json.dumps({"odometer_km": km, "seq": seq, "ts": time.time()}).encode()
        vehicle.client.publish("vehicles/mt-1/telemetry", payload, qos=1).wait_for_publish(10)

    try:
        odometer(1, 100.0)
        # The owner begins the vehicle's interval at 100 km at its next check, and stores it.
        _eventually(
            lambda: _rows(pg_url, "SELECT start_odometer_km FROM maintenance_intervals") == [(100.0,)],
            20,
            "the owner stored the vehicle's interval",
        )
        assert _due(at_owner, "mt-1") == [("ok", 100.0)]
        _eventually(lambda: _due(at_api, "mt-1") == [("ok", 100.0)], 20, "the API node lists it too")
        odometer(2, 1050.0)
        _eventually(lambda: _due(at_owner, "mt-1") == [("due_soon", 1050.0)], 20, "due soon at the owner")
        # Read from the database, not from what the API node saw before.
        assert _due(at_api, "mt-1") == [("due_soon", 1050.0)]
        due_only = httpx.get(f"{at_api}/maintenance/due", params={"status": "due", "vehicle": "mt-1"}, timeout=30)
        assert [d["remaining_km"] for d in due_only.json()["items"]] == [50.0]
    finally:
        _wind_down([vehicle], a=owner, api=api)
    _stop(owner, api)
