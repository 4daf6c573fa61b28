"""`fleethub demo`, as the README's quick start describes it."""

import asyncio
import re
import signal
import socket
import time

import httpx
import pytest

pytestmark = pytest.mark.e2e


async def _poll(check, wait_s: float = 30):
    deadline = time.monotonic() + wait_s
    while True:
        try:
            return await check()
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.25)


async def test_demo_vehicles_move_and_apply_desired(run_hub, tmp_path) -> None:
    """The demo's vehicles report, move, and apply a desired change made with one HTTP call."""
    with socket.socket() as holder:
        # Stand in for the Mosquitto that already holds 1883 on a developer's machine.
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        hub = run_hub(
            "demo",
            "--host",
            "127.0.0.1",
            "--mqtt-port",
            str(taken),
            "--http-port",
            "0",
            "--vehicles",
            "5",
            "--interval",
            "0.5",
            "--database",
            f"sqlite:///{tmp_path}/demo.db",
        )
        hub.wait_for(f"MQTT port {taken} is taken")
        line = hub.wait_for("HTTP API")
        base = re.search(r"(http://localhost:\d+)", line).group(1)
        async with httpx.AsyncClient(base_url=base, timeout=10) as http:

            async def five_connected():
                page = (await http.get("/api/v1/vehicles", params={"connected": "true"})).json()
                assert len(page["items"]) == 5
                return page["items"]

            vehicles = await _poll(five_connected)
            first = vehicles[0]["vehicle_id"]

            async def moved():
                # Some vehicles start parked; at least one of five must be driving somewhere.
                distinct = []
                for v in vehicles:
                    url = f"/api/v1/vehicles/{v['vehicle_id']}/history"
                    items = (await http.get(url, params={"fields": "gps.lat,gps.lon"})).json()["items"]
                    distinct.append(len({(p["data"].get("gps.lat"), p["data"].get("gps.lon")) for p in items}))
                assert max(distinct) >= 2, distinct
                return distinct

            await _poll(moved)
            resp = await http.patch(f"/api/v1/vehicles/{first}/twin/desired", json={"charge_limit": 77})
            assert resp.status_code == 200

            async def applied():
                twin = (await http.get(f"/api/v1/vehicles/{first}/twin")).json()
                assert twin["reported"]["charge_limit"] == 77
                assert twin["delta"] == {}
                return twin

            await _poll(applied)
        assert hub.stop(signal.SIGINT) == 0
