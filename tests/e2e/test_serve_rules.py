"""`fleethub serve` on PostgreSQL with a rules file: alerts on MQTT, ack over HTTP, kill -9, restart."""

import signal

import httpx
import pytest

from tests.e2e.test_serve import _serve_args
from tests.helpers import MqttClient

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

RULES = """
[rules.battery-hot]
when = "battery.temp_c > 60"
clear_when = "battery.temp_c < 45"
severity = "critical"
message = "Battery at {battery.temp_c} C"
"""


async def test_alert_acknowledged_survives_kill_9_on_postgresql(run_hub, tmp_path, pg_url) -> None:
    """An alert raised and acknowledged on a PostgreSQL hub is still acknowledged after kill -9, then clears once."""
    rules = tmp_path / "rules.toml"
    rules.write_text(RULES)
    # Development mode, explicitly: anonymous MQTT and no API tokens.
    env = {"FLEETHUB_RULES_FILE": str(rules), "FLEETHUB_MQTT_ALLOW_ANONYMOUS": "true", "FLEETHUB_AUTH_ENABLED": "false"}
    hub = run_hub(*_serve_args(pg_url), env=env)
    ports = hub.started()
    watcher = await MqttClient(ports["mqtt_port"]).connect()
    await watcher.subscribe("alerts/#")
    car = await MqttClient(ports["mqtt_port"], "veh-pg-e2e").connect()
    await car.publish_and_wait("vehicles/veh-pg-e2e/telemetry", {"battery": {"temp_c": 71.5}})
    topic, raised = await watcher.next_message("/veh-pg-e2e")
    assert topic == "alerts/default/critical/battery-hot/veh-pg-e2e"
    assert (raised["event"], raised["message"]) == ("raised", "Battery at 71.5 C")
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{ports['http_port']}") as http:
        response = await http.post(f"/api/v1/alerts/{raised['id']}/ack", json={"user": "maria", "note": "tow"})
        assert response.status_code == 200, response.text
    _, acked = await watcher.next_message("/veh-pg-e2e")
    assert acked["event"] == "acknowledged"
    car.close()
    watcher.close()
    hub.kill()  # SIGKILL: no orderly shutdown, nothing flushed on the way out

    again = run_hub(*_serve_args(pg_url), env=env)
    ports = again.started()
    watcher = await MqttClient(ports["mqtt_port"]).connect()
    await watcher.subscribe("alerts/#")
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{ports['http_port']}") as http:
        listed = (await http.get("/api/v1/alerts", params={"vehicle": "veh-pg-e2e"})).json()["items"]
        assert [(a["id"], a["state"], a["note"]) for a in listed] == [(raised["id"], "acknowledged", "tow")]
    car = await MqttClient(ports["mqtt_port"], "veh-pg-e2e").connect()
    await car.publish_and_wait("vehicles/veh-pg-e2e/telemetry", {"battery": {"temp_c": 40}})
    _, cleared = await watcher.next_message("/veh-pg-e2e")
    assert (cleared["event"], cleared["id"]) == ("cleared", raised["id"])
    with pytest.raises(TimeoutError):
        await watcher.next_message("/veh-pg-e2e", wait_s=0.5)
    car.close()
    watcher.close()
    assert again.stop(signal.SIGTERM) == 0
