"""The operator console in a real headless Chromium against a real hub with simulated vehicles."""

import re

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import VEHICLES, login, shot

pytestmark = pytest.mark.browser


def test_an_operator_logs_in_and_sees_the_vehicles_on_the_map_and_in_the_list(page, hub) -> None:
    """After a password login the map draws every simulated vehicle and the list has a row for each."""
    login(page, hub, "oper")
    canvas = page.locator("canvas.vehicle-canvas")
    expect(canvas).to_have_attribute("data-drawn", str(VEHICLES))
    assert canvas.count() == 1
    assert page.locator(".legend").inner_text().count("\n") >= 4
    shot(page, "map.png")
    page.get_by_role("link", name="Vehicles").click()
    page.get_by_role("link", name="veh-0001").wait_for()
    ids = page.locator(".vrow .c-id").all_inner_texts()
    assert ids == [f"veh-{i:04d}" for i in range(1, VEHICLES + 1)]
    assert page.locator("output").inner_text() == f"{VEHICLES} of {VEHICLES}"
    page.get_by_label("State").select_option("moving")
    page.get_by_label("Battery below").fill("0")
    expect(page.locator(".filters output")).to_have_text(f"0 of {VEHICLES}")


def test_an_operator_changes_a_desired_value_and_sees_the_delta_clear(page, hub) -> None:
    """A desired change sent with If-Match reaches the simulator, which applies it: status applied, no delta."""
    current = hub.api.get("/api/v1/vehicles/veh-0002/twin").json()["reported"].get("charge_limit", 80)
    wanted = 55 if current != 55 else 65
    login(page, hub, "oper")
    page.goto(hub.url + "/#/vehicle/veh-0002")
    page.get_by_role("heading", name="Desired", exact=True).wait_for()
    page.get_by_label("Key").fill("charge_limit")
    page.get_by_label("Value (JSON)").fill(str(wanted))
    page.get_by_role("button", name="Set desired").click()
    desired = page.get_by_test_id("desired")
    desired.get_by_text(str(wanted), exact=True).wait_for()
    desired.locator(".status-applied").wait_for(timeout=15_000)
    page.get_by_test_id("delta").get_by_text("none").wait_for()
    twin = hub.api.get("/api/v1/vehicles/veh-0002/twin").json()
    assert twin["reported"]["charge_limit"] == wanted
    assert twin["delta"] == {}
    shot(page, "vehicle.png")
    audit = hub.api.get("/api/v1/audit", params={"action": "twin.desired", "vehicle": "veh-0002"}).json()["items"]
    assert audit[0]["actor"] == "oper"


def test_an_operator_sends_a_command_confirms_it_and_watches_it_succeed(page, hub) -> None:
    """The command goes out only after the confirm step, and its lifecycle ends in succeeded."""
    login(page, hub, "oper")
    page.goto(hub.url + "/#/vehicle/veh-0003")
    page.get_by_role("combobox", name="Command").fill("locate")
    page.get_by_test_id("send-command").click()
    dialog = page.get_by_role("dialog")
    dialog.wait_for()
    assert "locate" in dialog.inner_text()
    assert hub.api.get("/api/v1/vehicles/veh-0003/commands").json()["items"] == []
    dialog.get_by_role("button", name="Send command").click()
    page.locator('[data-testid="command-lifecycle"][data-state="succeeded"]').wait_for(timeout=15_000)
    text = page.get_by_test_id("command-lifecycle").inner_text()
    assert re.search(r"queued.*sent.*succeeded", text, re.S), text


def test_an_alert_raised_by_a_rule_is_acknowledged_from_the_inbox(page, hub) -> None:
    """A rule raises a critical alert; a maintenance user acknowledges it in the inbox, and the hub records who."""
    tagged = hub.api.patch("/api/v1/vehicles/veh-0004/tags", json={"console_test": "yes"})
    assert tagged.status_code == 200, tagged.text
    rule = {
        "when": "soc >= 0 and speed >= 0",
        "severity": "critical",
        "message": "console test",
        "selector": {"tags": {"console_test": "yes"}},
    }
    made = hub.api.put("/api/v1/rules/console-test", json=rule)
    assert made.status_code in (200, 201), made.text
    login(page, hub, "mia")
    page.get_by_role("link", name="Alerts").click()
    item = page.locator("li.alert", has_text="veh-0004")
    item.wait_for(timeout=15_000)
    item.get_by_label("Note").fill("driver called")
    item.get_by_role("button", name="Acknowledge").click()
    item.get_by_text("acknowledged by mia").wait_for()
    shot(page, "alerts.png")
    alerts = hub.api.get("/api/v1/alerts", params={"rule": "console-test"}).json()["items"]
    assert alerts[0]["state"] == "acknowledged"
    assert alerts[0]["acknowledged_by"] == "mia"
    assert alerts[0]["note"] == "driver called"


def test_a_viewer_sees_no_command_button_and_no_desired_editor(page, hub) -> None:
    """A viewer reads the vehicle page but gets neither the command form nor the desired editor."""
    login(page, hub, "vic")
    page.goto(hub.url + "/#/vehicle/veh-0001")
    page.get_by_role("heading", name="Reported", exact=True).wait_for()
    page.get_by_role("heading", name="Presence").wait_for()
    assert page.get_by_test_id("send-command").count() == 0
    assert page.get_by_role("form", name="Send a command").count() == 0
    assert page.get_by_role("form", name="Change a desired value").count() == 0
    assert page.get_by_role("link", name="Audit").count() == 0


def test_a_user_of_another_fleet_sees_none_of_these_vehicles(page, hub) -> None:
    """A globex viewer's map and list are empty and the default fleet's vehicle page is not found;
    a viewer of the default fleet, in the same browser after logging out and in, sees them all."""
    login(page, hub, "gus")
    canvas = page.locator("canvas.vehicle-canvas")
    expect(canvas).to_have_attribute("data-drawn", "0")
    page.wait_for_timeout(1500)  # live batches (every 0.5 s) would have drawn a vehicle by now
    assert canvas.get_attribute("data-drawn") == "0"
    page.get_by_role("link", name="Vehicles").click()
    assert page.locator("output").inner_text() == "0 of 0"
    page.goto(hub.url + "/#/vehicle/veh-0001")
    page.get_by_role("alert").get_by_text("not found").wait_for()
    assert page.locator("body").inner_text().count("veh-0002") == 0
    # Positive control: the same page, logged in as a viewer of the vehicles' fleet, draws them all.
    page.get_by_role("button", name="Log out").click()
    login(page, hub, "vic")
    page.get_by_role("link", name="Map").click()
    expect(page.locator("canvas.vehicle-canvas")).to_have_attribute("data-drawn", str(VEHICLES))
