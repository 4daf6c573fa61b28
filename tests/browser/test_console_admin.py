"""The console's rules editor, zone drawing, fleet jobs, audit log and tokens in a real Chromium."""

import uuid

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import login, shot

pytestmark = pytest.mark.browser


def test_a_rule_mistake_is_shown_at_its_line_and_column_and_a_fixed_rule_is_saved_and_backtested(page, hub) -> None:
    """Check places the compile error under `when` with its line and column; the fixed rule saves and backtests."""
    name = f"rule-{uuid.uuid4().hex[:6]}"
    login(page, hub, "ada")
    page.get_by_role("link", name="Rules").click()
    page.get_by_role("button", name="New rule").click()
    page.get_by_label("Name").fill(name)
    page.get_by_label("When (condition)").fill("speed > 5 and\nsoc < < 20")
    page.get_by_role("button", name="Check").click()
    problem = page.locator('.problem[data-field="when"]')
    expect(problem).to_be_visible()
    assert problem.get_attribute("data-line") == "2"
    assert int(problem.get_attribute("data-column") or 0) >= 5
    source_line, caret_line = problem.locator("pre").inner_text().split("\n")
    assert source_line == "soc < < 20"
    assert caret_line.index("^") == int(problem.get_attribute("data-column") or 0) - 1
    shot(page, "rule-error.png")
    page.get_by_label("When (condition)").fill("speed > 500")
    page.get_by_role("button", name="Save rule").click()
    expect(page.get_by_text(f"Saved {name}.")).to_be_visible()
    assert hub.api.get(f"/api/v1/rules/{name}").json()["when"] == "speed > 500"
    page.get_by_label("Vehicle", exact=True).fill("veh-0001")
    page.get_by_role("button", name="Replay history").click()
    expect(page.get_by_text("rows replayed")).to_be_visible()
    hub.api.delete(f"/api/v1/rules/{name}")


def test_an_admin_draws_a_circle_zone_on_the_map_and_saves_it(page, hub) -> None:
    """Two clicks on the map make a circle; saved, it is a zone of the hub."""
    name = f"zone-{uuid.uuid4().hex[:6]}"
    login(page, hub, "ada")
    page.get_by_role("button", name="Draw a circle").click()
    box = page.locator(".map").bounding_box()
    assert box is not None
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.click(cx, cy)
    page.mouse.click(cx + 80, cy)
    page.get_by_label("Name").fill(name)
    page.get_by_role("button", name="Save zone").click()
    expect(page.locator(".zone-list").get_by_text(name)).to_be_visible()
    zone = hub.api.get(f"/api/v1/zones/{name}").json()
    assert zone["kind"] == "circle"
    assert zone["radius_m"] > 0
    shot(page, "zone.png")
    hub.api.delete(f"/api/v1/zones/{name}")


def test_an_operator_creates_a_fleet_job_after_confirming_and_watches_it_complete(page, hub) -> None:
    """A job for two vehicles goes out only after the confirm step and ends completed with both answered."""
    login(page, hub, "oper")
    page.get_by_role("link", name="Jobs").click()
    form = page.get_by_role("form", name="New fleet job")
    form.get_by_label("Vehicles", exact=True).fill("veh-0001, veh-0002")
    form.get_by_label("Command").fill("locate")
    form.get_by_role("button", name="Create…").click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text("veh-0001")
    before = len(hub.api.get("/api/v1/commands/jobs").json()["items"])
    dialog.get_by_role("button", name="Create job").click()
    job = page.locator(".job").first
    expect(job.locator(".badge")).to_have_text("completed", timeout=20_000)
    expect(job).to_contain_text("2 finished")
    assert len(hub.api.get("/api/v1/commands/jobs").json()["items"]) == before + 1


def test_an_admin_reads_the_audit_log_and_issues_a_token_shown_once(page, hub) -> None:
    """The audit log lists console logins; a token issued from the console is shown once and works."""
    login(page, hub, "ada")
    page.get_by_role("link", name="Audit").click()
    expect(page.locator("table.audit").get_by_text("console.login").first).to_be_visible()
    page.get_by_role("link", name="Users & tokens").click()
    page.get_by_role("form", name="Issue a token").get_by_label("Label").fill("from the console")
    page.get_by_role("button", name="Issue token").click()
    token = page.locator(".issued pre").inner_text().strip()
    assert token.startswith("fh_")
    me = hub.api.get("/api/v1/users/me", headers={"Authorization": f"Bearer {token}"}).json()
    assert me["name"] == "ada"
    page.get_by_role("button", name="Done").click()
    expect(page.locator(".issued")).to_have_count(0)
