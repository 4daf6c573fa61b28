"""`fleethub serve` is secure by default: the CLI provisions, anonymous clients and tokenless calls are refused."""

import re
import subprocess
import sys

import httpx
import pytest

from tests.integration.security.client import Client

pytestmark = pytest.mark.e2e


def _cli(*args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "fleethub", *args], capture_output=True, text=True, check=True)
    return done.stdout


async def test_serve_refuses_anonymous_and_admits_provisioned(run_hub, tmp_path) -> None:
    """With no settings, serve refuses anonymous MQTT and tokenless HTTP; CLI-made credentials work."""
    db = f"sqlite:///{tmp_path}/secure.db"
    added = _cli("vehicles", "add", "veh-sec", "--fleet", "acme", "--database", db)
    secret = re.search(r"MQTT password: (\S+)", added).group(1)
    made = _cli("users", "add", "boss", "--role", "admin", "--database", db)
    token = re.search(r"API token: (\S+)", made).group(1)
    hub = run_hub(
        "serve", "--host", "127.0.0.1", "--mqtt-port", "0", "--http-port", "0", "--database", db,
        "--log-format", "json",
    )  # fmt: skip
    ports = hub.started()
    anonymous = Client(ports["mqtt_port"], "veh-sec")
    assert await anonymous.connect() != 0
    anonymous.close()
    car = Client(ports["mqtt_port"], "veh-sec", username="veh-sec", password=secret)
    assert await car.connect() == 0
    await car.publish("vehicles/veh-sec/telemetry", {"soc": 42})
    car.close()
    base = f"http://127.0.0.1:{ports['http_port']}"
    async with httpx.AsyncClient(base_url=base, timeout=10) as http:
        assert (await http.get("/api/v1/vehicles")).status_code == 401
        twin = (await http.get("/api/v1/vehicles/veh-sec/twin", headers={"Authorization": f"Bearer {token}"})).json()
    assert twin["fleet"] == "acme"
    assert twin["reported"]["soc"] == 42
    assert hub.stop() == 0
