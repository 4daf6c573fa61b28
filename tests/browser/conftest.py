"""A real hub and simulated vehicles in subprocesses, driven through a real headless Chromium.

The browser is the system's Chromium (Debian: `apt-get install chromium chromium-driver`),
driven by Playwright for Python; no browser is downloaded. Without it these tests skip
with the reason, except under CI=true, where a missing browser is a failure.
Screenshots go to test-results/console/ (gitignored) for a reviewer to look at.
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from tests.e2e.conftest import HubProcess

CHROMIUM = os.environ.get("FLEETHUB_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
RESULTS = Path(__file__).resolve().parents[2] / "test-results" / "console"
VEHICLES = 5
PASSWORD = "console-test-password"
USERS = {
    "oper": ("operator", ["default"]),
    "mia": ("maintenance", ["default"]),
    "vic": ("viewer", ["default"]),
    "gus": ("viewer", ["globex"]),
    "ada": ("admin", ["*"]),
}


def _missing_browser() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "Playwright for Python is not installed (pip install -e '.[dev]')"
    if not Path(CHROMIUM).exists():
        return f"no Chromium at {CHROMIUM} (apt-get install chromium chromium-driver)"
    return None


def need_browser() -> None:
    """Skip without the browser, with the reason; under CI=true fail instead."""
    reason = _missing_browser()
    if reason is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true and the browser tests cannot run: {reason}")
    pytest.skip(reason)


class Hub:
    def __init__(self, url: str, token: str, process: HubProcess, sim: HubProcess) -> None:
        self.url = url
        self.token = token
        self.process = process
        self.sim = sim
        self.api = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=10)

    @property
    def origin(self) -> str:
        parts = urlsplit(self.url)
        return f"{parts.scheme}://{parts.netloc}"


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    """`fleethub serve` with auth on (anonymous MQTT for the simulator), users of two fleets, 5 vehicles."""
    need_browser()
    tmp = tmp_path_factory.mktemp("console")
    token = secrets.token_hex(24)
    config = tmp / "fleethub.toml"
    config.write_text(
        f"""
[mqtt]
host = "127.0.0.1"
port = 0
allow_anonymous = true
[http]
host = "127.0.0.1"
port = 0
[store]
url = "sqlite:///{tmp / "hub.db"}"
[auth]
bootstrap_token = "{token}"
[abuse]
message_rate_per_s = 0
[console]
live_interval_s = 0.5
"""
    )
    process = HubProcess(["serve", "--config", str(config), "--log-format", "json"])
    sim: HubProcess | None = None
    running: Hub | None = None
    try:
        started = process.started()
        url = f"http://127.0.0.1:{started['http_port']}"
        sim = HubProcess(
            [
                "sim",
                "--vehicles",
                str(VEHICLES),
                "--interval",
                "1",
                "--port",
                str(started["mqtt_port"]),
                "--ramp",
                "0.5",
                "--seed",
                "7",
            ]
        )
        running = Hub(url, token, process, sim)
        for name, (role, fleets) in USERS.items():
            made = running.api.post(
                "/api/v1/users", json={"name": name, "role": role, "fleets": fleets, "password": PASSWORD}
            )
            assert made.status_code == 201, made.text
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            listed = running.api.get("/api/v1/vehicles", params={"limit": 100}).json()["items"]
            if len([d for d in listed if "gps" in d["reported"]]) == VEHICLES:
                break
            time.sleep(0.2)
        else:
            raise AssertionError(f"the simulated vehicles did not report; sim output:\n{sim.text}")
        yield running
    finally:
        if running is not None:
            running.api.close()
        if sim is not None:
            sim.stop()
        process.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    need_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def page(browser, hub: Hub, request: pytest.FixtureRequest) -> Iterator[object]:
    """A fresh browser context whose every request must go to the hub's origin (others fail the test)."""
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    foreign: list[str] = []

    def only_the_hub(route) -> None:
        if route.request.url.startswith(hub.origin + "/") or route.request.url == hub.origin:
            route.continue_()
        else:
            foreign.append(route.request.url)
            route.abort()

    context.route("**/*", only_the_hub)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    yield page
    RESULTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(RESULTS / f"{request.node.name}.png"))
    context.close()
    assert foreign == [], f"requests left the hub's origin: {foreign}"
    assert errors == [], f"the page raised: {errors}"


def login(page, hub: Hub, user: str) -> None:
    page.goto(hub.url + "/")
    page.get_by_label("User name").fill(user)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.get_by_role("navigation", name="Console").wait_for()


def shot(page, name: str) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(RESULTS / name))
