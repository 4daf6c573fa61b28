"""`fleethub serve` as a new user runs it: start, use, stop, start again."""

import signal
import socket
import time

import httpx
import pytest

from tests.helpers import MqttClient

pytestmark = pytest.mark.e2e

# Development mode, explicitly: these tests publish as anonymous vehicles and call the API without tokens.
DEV_MODE = {"FLEETHUB_MQTT_ALLOW_ANONYMOUS": "true", "FLEETHUB_AUTH_ENABLED": "false"}


def _serve_args(db: str) -> list[str]:
    return [
        "serve",
        "--host",
        "127.0.0.1",
        "--mqtt-port",
        "0",
        "--http-port",
        "0",
        "--database",
        db,
        "--log-format",
        "json",
    ]


async def test_data_survives_sigterm_and_restart(run_hub, tmp_path) -> None:
    """Publish, query over HTTP, SIGTERM (exit 0), restart on the same database: the data is still there."""
    db = f"sqlite:///{tmp_path}/hub.db"
    hub = run_hub(*_serve_args(db), env=DEV_MODE)
    ports = hub.started()
    car = await MqttClient(ports["mqtt_port"], "veh-e2e").connect()
    for i in range(1, 21):
        await car.publish_and_wait("vehicles/veh-e2e/telemetry", {"odometer_km": i, "seq": i, "ts": time.time()})
    car.close()
    base = f"http://127.0.0.1:{ports['http_port']}"
    async with httpx.AsyncClient(base_url=base) as http:
        assert (await http.get("/api/v1/vehicles/veh-e2e/twin")).json()["reported"]["odometer_km"] == 20
        resp = await http.patch("/api/v1/vehicles/veh-e2e/twin/desired", json={"charge_limit": 80})
        assert resp.status_code == 200
    assert hub.stop(signal.SIGTERM) == 0
    assert "hub stopped" in hub.text

    again = run_hub(*_serve_args(db), env=DEV_MODE)
    ports = again.started()
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{ports['http_port']}") as http:
        twin = (await http.get("/api/v1/vehicles/veh-e2e/twin")).json()
        assert twin["reported"]["odometer_km"] == 20
        assert twin["desired"] == {"charge_limit": 80}
        assert twin["connection"]["connected"] is False
        rows = (await http.get("/api/v1/vehicles/veh-e2e/history", params={"limit": 100})).json()["items"]
        assert [r["seq"] for r in rows] == list(range(1, 21))
    assert again.stop(signal.SIGINT) == 0


def test_serve_names_a_taken_port(run_hub, tmp_path) -> None:
    """`serve` refuses to start on a taken MQTT port and says which port and how to fix it."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        hub = run_hub(
            "serve",
            "--host",
            "127.0.0.1",
            "--mqtt-port",
            str(port),
            "--http-port",
            "0",
            "--database",
            f"sqlite:///{tmp_path}/p.db",
        )
        code = hub.exit_code()
    out = hub.text
    assert code == 2
    assert f"MQTT port {port} is already in use" in out
    assert "--mqtt-port" in out


def test_invalid_setting_fails_at_start(run_hub) -> None:
    """An invalid setting stops start-up with a message naming the setting."""
    hub = run_hub("serve", env={"FLEETHUB_MQTT_PORT": "99999"})
    assert hub.exit_code() == 2
    assert "setting 'mqtt.port' must be 0-65535" in hub.text


def test_migrate_reports_schema_version(run_hub, tmp_path) -> None:
    """`fleethub migrate` applies migrations and prints the schema version."""
    hub = run_hub("migrate", "--database", f"sqlite:///{tmp_path}/m.db")
    assert hub.exit_code() == 0
    assert '"schema_version":' in hub.text
