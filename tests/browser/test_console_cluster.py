"""The console of an API node in worker mode, in a real Chromium: what a worker commits shows up live.

A real Mosquitto, one worker and one API node (`--role api`) on a fresh PostgreSQL database, as
docs/scale.md describes; the browser talks only to the API node, the vehicle only to Mosquitto.
Everything the page shows therefore travelled through PostgreSQL: the worker's commits through
LISTEN/NOTIFY (cluster/live.py), the operator's desired write to the worker through
cluster_requests (cluster/requests.py). Auth is off, as in the other worker-mode tests.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import paho.mqtt.client as mqtt
import pytest
from playwright.sync_api import expect

from tests.browser.conftest import RESULTS, need_browser, shot
from tests.e2e.conftest import run_hub
from tests.e2e.test_scale import Vehicle, _eventually, _owners, _rows, _worker, mosquitto

# Fixtures of the worker-mode tests: a real Mosquitto on a free port, and `fleethub` subprocesses.
__all__ = ["mosquitto", "run_hub"]

pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.postgres]

# Batches every 0.2 s keep the waits short; the heartbeat lets a closed stream end soon.
LIVE = {"FLEETHUB_CONSOLE_LIVE_INTERVAL_S": "0.2", "FLEETHUB_CONSOLE_LIVE_HEARTBEAT_S": "1"}
VID = "tram-01"


class DeltaVehicle(Vehicle):
    """A Vehicle that also subscribes to its twin delta and keeps every delta it receives."""

    def __init__(self, port: int, vid: str) -> None:
        self.deltas: list[dict] = []
        self.got_delta = threading.Event()
        super().__init__(port, vid)
        self.client.subscribe(f"vehicles/{vid}/twin/delta", qos=1)

    def _message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        if msg.topic.endswith("/twin/delta"):
            self.deltas.append(json.loads(msg.payload))
            self.got_delta.set()
            return
        super()._message(client, userdata, msg)

    def report(self, seq: int, **values: object) -> None:
        payload = json.dumps({**values, "seq": seq, "ts": time.time()}).encode()
        self.client.publish(f"vehicles/{self.vid}/telemetry", payload, qos=1).wait_for_publish(10)

    def goodbye(self) -> None:
        """Leave as the presence convention says a vehicle leaves cleanly (docs/scale.md), and disconnect."""
        self.client.publish(f"vehicles/{self.vid}/status", b"offline-clean", qos=1).wait_for_publish(10)
        self.close()

    def close(self) -> None:
        if self.client.is_connected():
            super().close()


@pytest.fixture
def api_page(browser, mosquitto: int, pg_url: str, run_hub, tmp_path: Path) -> Iterator[tuple[object, str]]:
    """A worker that holds every partition, an API node, and a browser page whose requests may go only to it."""
    need_browser()
    worker, _ = _worker(run_hub, tmp_path, mosquitto, pg_url, "w1", env=LIVE)
    api, http_api = _worker(run_hub, tmp_path, mosquitto, pg_url, "api", role="api", env=LIVE)
    _eventually(lambda: _owners(pg_url) == {"w1": 16}, 20, "the worker holds every partition")
    origin = f"http://127.0.0.1:{http_api}"
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    foreign: list[str] = []

    def only_the_api_node(route) -> None:
        if route.request.url.startswith(origin + "/") or route.request.url == origin:
            route.continue_()
        else:
            foreign.append(route.request.url)
            route.abort()

    context.route("**/*", only_the_api_node)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        yield page, origin
        RESULTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(RESULTS / "cluster-api-node.png"))
    finally:
        context.close()
        # Shown only when the test fails.
        print("worker:\n", worker.text[-6000:], "\napi node:\n", api.text[-6000:])
    assert foreign == [], f"requests left the API node's origin: {foreign}"
    assert errors == [], f"the page raised: {errors}"
    assert worker.stop() == 0
    assert api.stop() == 0


def test_the_console_of_an_api_node_shows_a_workers_vehicle_live_and_writes_through_its_owner(
    api_page, pg_url: str, mosquitto: int
) -> None:
    """Telemetry committed by the worker appears and updates live on the API node's console; a desired
    value set there reaches the vehicle from its owner; the worker's alert appears live and is acknowledged;
    a twin deleted in the database leaves the list."""
    page, origin = api_page
    page.goto(origin + "/#/list")
    expect(page.get_by_role("note")).to_contain_text("Development mode")
    expect(page.locator(".filters output")).to_have_text("0 of 0")
    vehicle = DeltaVehicle(mosquitto, VID)
    try:
        # 1. The vehicle's first reading appears in the list without a reload, and a later one updates its row.
        vehicle.report(1, soc=64.0, gps={"lat": 48.137, "lon": 11.575}, speed=0.0)
        row = page.locator(".vrow", has_text=VID)
        expect(row.locator(".c-num").nth(1)).to_have_text("64 %", timeout=15_000)
        vehicle.report(2, soc=58.0, gps={"lat": 48.138, "lon": 11.576}, speed=12.0)
        expect(row.locator(".c-num").nth(1)).to_have_text("58 %", timeout=15_000)
        expect(row.locator(".c-num").nth(0)).to_have_text("12 km/h")
        shot(page, "cluster-list.png")
        page.get_by_role("link", name="Map").click()
        expect(page.locator("canvas.vehicle-canvas")).to_have_attribute("data-drawn", "1", timeout=15_000)

        # 2. A desired value set on the API node's vehicle page goes to the owner, which sends the vehicle its delta.
        assert not vehicle.got_delta.is_set()  # the control for "the delta came from this write"
        page.goto(origin + f"/#/vehicle/{VID}")
        page.get_by_role("heading", name="Desired", exact=True).wait_for()
        page.get_by_label("Key").fill("charge_limit")
        page.get_by_label("Value (JSON)").fill("72")
        page.get_by_role("button", name="Set desired").click()
        desired = page.get_by_test_id("desired")
        desired.get_by_text("72", exact=True).wait_for(timeout=15_000)
        assert vehicle.got_delta.wait(15), "the vehicle received no delta"
        assert vehicle.deltas[-1]["delta"] == {"charge_limit": 72}
        expect(page.get_by_test_id("delta")).to_contain_text("charge_limit = 72")
        # The vehicle applies it; its report, committed by the worker, clears the delta on the page live.
        vehicle.report(3, soc=57.0, charge_limit=72)
        desired.locator(".status-applied").wait_for(timeout=15_000)
        page.get_by_test_id("delta").get_by_text("none").wait_for()
        shot(page, "cluster-vehicle.png")
        audit = httpx.get(origin + "/api/v1/audit", params={"action": "twin.desired", "vehicle": VID}).json()["items"]
        assert len(audit) == 1

        # 3. An alert the worker raises (low-battery: soc < 15) appears in the API node's inbox live.
        page.get_by_role("link", name="Alerts").click()
        expect(page.get_by_text("No open alerts.")).to_be_visible()
        vehicle.report(4, soc=9.0)
        item = page.locator("li.alert", has_text=VID)
        item.wait_for(timeout=15_000)
        expect(item).to_contain_text("Battery at 9")
        item.get_by_label("Note").fill("towing it in")
        item.get_by_role("button", name="Acknowledge").click()
        expect(item).to_contain_text("acknowledged by")
        expect(item).to_contain_text("towing it in")
        shot(page, "cluster-alerts.png")
        alerts = _rows(pg_url, "SELECT vehicle_id, state, doc->>'note' FROM alerts")
        assert alerts == [(VID, "acknowledged", "towing it in")]

        # 4. A vehicle gone for good: it says goodbye, and once its twin records that (the worker has
        # written the disconnect), its twin is deleted in the database as an operator would in psql; the
        # row leaves the open list. (Deleted before, the worker's write of the goodbye brings it back.)
        page.get_by_role("link", name="Vehicles").click()
        expect(page.locator(".filters output")).to_have_text("1 of 1")
        vehicle.goodbye()
        _eventually(
            lambda: not httpx.get(origin + f"/api/v1/vehicles/{VID}/twin").json()["connection"]["connected"],
            15,
            "the twin records the disconnect",
        )
        _rows(pg_url, "DELETE FROM twins WHERE vehicle_id = %s RETURNING vehicle_id", (VID,))
        expect(page.locator(".filters output")).to_have_text("0 of 0", timeout=15_000)
        assert page.locator(".vrow").count() == 0
    finally:
        vehicle.close()
