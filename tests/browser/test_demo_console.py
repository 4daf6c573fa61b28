"""The console of `fleethub demo` (development mode): no login screen, and it says so."""

from collections.abc import Iterator

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import RESULTS, need_browser
from tests.e2e.conftest import HubProcess

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    need_browser()
    tmp = tmp_path_factory.mktemp("demo")
    process = HubProcess(
        [
            "demo",
            "--http-port",
            "0",
            "--mqtt-port",
            "0",
            "--vehicles",
            "3",
            "--interval",
            "1",
            "--database",
            f"sqlite:///{tmp / 'demo.db'}",
            "--log-format",
            "json",
        ]
    )
    try:
        line = process.wait_for("Console ")
        yield line.split()[1]
    finally:
        process.stop()


def test_the_demo_console_opens_without_a_login_and_says_it_is_development_mode(browser, demo) -> None:
    """The printed console URL opens straight on the map, with the development-mode notice and the vehicles."""
    page = browser.new_page()
    try:
        page.goto(demo)
        expect(page.get_by_role("note")).to_contain_text("Development mode")
        assert page.get_by_label("User name").count() == 0
        expect(page.locator("canvas.vehicle-canvas")).to_have_attribute("data-drawn", "3", timeout=20_000)
        RESULTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(RESULTS / "demo.png"))
    finally:
        page.close()
