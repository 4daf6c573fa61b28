"""`kill -9` of `fleethub serve` loses no accepted command and no acknowledged result."""

from __future__ import annotations

import json
import queue
import signal
import uuid

import httpx
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

pytestmark = pytest.mark.e2e


# Development mode, explicitly: anonymous vehicles and no API tokens.
DEV_MODE = {"FLEETHUB_MQTT_ALLOW_ANONYMOUS": "true", "FLEETHUB_AUTH_ENABLED": "false"}


def _serve_args(db: str) -> list[str]:
    return ["serve", "--host", "127.0.0.1", "--mqtt-port", "0", "--http-port", "0", "--database", db]


class Vehicle:
    def __init__(self, vehicle_id: str, port: int) -> None:
        self.vehicle_id = vehicle_id
        self.messages: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self.paho = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=vehicle_id)
        self.paho.on_message = lambda _c, _u, msg: self.messages.put((msg.topic, msg.payload))
        self.paho.connect("127.0.0.1", port)
        self.paho.loop_start()

    def publish(self, topic: str, payload: object) -> None:
        info = self.paho.publish(topic, json.dumps(payload), qos=1)
        info.wait_for_publish(10)
        assert info.is_published()

    def close(self) -> None:
        self.paho.disconnect()
        self.paho.loop_stop()


def test_commands_and_results_survive_sigkill(run_hub, tmp_path) -> None:
    """Accepted (202) commands are still queued after SIGKILL; a PUBACKed result is still recorded."""
    db = f"sqlite:///{tmp_path}/commands.db"
    run = uuid.uuid4().hex[:6]
    parked, online = f"veh-parked-{run}", f"veh-online-{run}"

    hub = run_hub(*_serve_args(db), env=DEV_MODE)
    ports = hub.started()
    http = httpx.Client(base_url=f"http://127.0.0.1:{ports['http_port']}", timeout=10)
    for vid in (parked, online):
        vehicle = Vehicle(vid, ports["mqtt_port"])
        vehicle.publish(f"vehicles/{vid}/telemetry", {"speed": 0})
        vehicle.close()
    queued = []
    for n in range(20):
        response = http.post(f"/api/v1/vehicles/{parked}/commands", json={"name": "honk", "args": {"n": n}})
        assert response.status_code == 202
        queued.append(response.json()["id"])
    vehicle = Vehicle(online, ports["mqtt_port"])
    vehicle.paho.subscribe(f"vehicles/{online}/commands/+", qos=1)
    answered = http.post(f"/api/v1/vehicles/{online}/commands", json={"name": "lock"}).json()["id"]
    topic, _ = vehicle.messages.get(timeout=10)
    assert topic.endswith(answered)
    vehicle.publish(f"{topic}/result", {"status": "succeeded", "detail": "locked before the crash"})
    hub.proc.send_signal(signal.SIGKILL)
    hub.proc.wait(10)
    vehicle.paho.loop_stop()
    sock = vehicle.paho.socket()
    if sock is not None:
        sock.close()
    http.close()

    again = run_hub(*_serve_args(db), env=DEV_MODE)
    ports = again.started()
    with httpx.Client(base_url=f"http://127.0.0.1:{ports['http_port']}", timeout=10) as http:
        listed = http.get(f"/api/v1/vehicles/{parked}/commands", params={"limit": 100}).json()["items"]
        assert [c["id"] for c in reversed(listed)] == queued
        assert {c["state"] for c in listed} == {"queued"}
        done = http.get(f"/api/v1/vehicles/{online}/commands/{answered}").json()
        assert (done["state"], done["detail"]) == ("succeeded", "locked before the crash")
    assert again.stop(signal.SIGTERM) == 0
