"""The console's maintenance view in a real Chromium: which vehicles are due, and recording a service."""

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import login, shot

pytestmark = pytest.mark.browser


def test_a_maintenance_user_sees_overdue_vehicles_and_records_a_service(page, hub) -> None:
    """A schedule of a few seconds makes the vehicles overdue; a service recorded from the console resets one."""
    schedule = {"name": "Inspection", "every_days": 0.00002, "selector": {"fleet": "default"}}
    assert hub.api.put("/api/v1/maintenance/schedules/inspect", json=schedule).status_code in (200, 201)
    login(page, hub, "mia")
    page.get_by_role("link", name="Maintenance").click()
    row = page.locator("table.maintenance-due tr", has_text="veh-0001")
    expect(row).to_contain_text("Overdue", timeout=20_000)
    shot(page, "maintenance-due.png")
    page.once("dialog", lambda dialog: dialog.accept("filters changed"))
    row.get_by_role("button", name="Record service…").click()
    expect(page.locator(".maintenance-page [role=status]")).to_contain_text("Service recorded for veh-0001")
    records = hub.api.get("/api/v1/vehicles/veh-0001/services").json()["items"]
    assert [(r["schedule_id"], r["by"], r["note"]) for r in records] == [("inspect", "mia", "filters changed")]
