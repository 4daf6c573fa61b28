"""The whole hub with persistent MQTT sessions: what a vehicle gets back after time away, and QoS 2 telemetry."""

from __future__ import annotations

import asyncio
import json
import queue
import threading
import time
import uuid

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from tests.helpers import eventually


def vid() -> str:
    return f"veh-{uuid.uuid4().hex[:8]}"


async def _offline(http, v: str) -> bool:
    twin = (await http.get(f"/api/v1/vehicles/{v}/twin")).json()
    assert twin["connection"]["connected"] is False
    return True


async def _drain(car, count: int, wait_s: float = 10) -> list[tuple[str, object]]:
    """The next `count` messages in arrival order, JSON-decoded."""
    got: list[tuple[str, object]] = []
    deadline = time.monotonic() + wait_s
    while len(got) < count and time.monotonic() < deadline:
        try:
            topic, payload = car.messages.get_nowait()
        except queue.Empty:
            await asyncio.sleep(0.02)
            continue
        got.append((topic, json.loads(payload)))
    return got


async def test_vehicle_back_after_long_absence_gets_every_desired_change_and_queued_command(hub, http, clients) -> None:
    """Back online, a persistent-session vehicle gets its queued deltas and commands in order, then the full delta.

    The hour offline is stood in for by a disconnect of a few hundred milliseconds: the
    broker keeps the session until `mqtt.session_expiry_s` (7 days by default), so how
    long the vehicle is away makes no difference below that.
    """
    v = vid()
    car = await clients(v, clean_session=False, username=v).connect()
    await car.publish_and_wait(f"vehicles/{v}/telemetry", {"charge_limit": 90, "locked": False, "seq": 1})
    await car.subscribe(f"vehicles/{v}/twin/delta", qos=1)
    await car.subscribe(f"vehicles/{v}/commands/+", qos=1)
    car.drop()
    await eventually(lambda: _offline(http, v))

    patches = [{"charge_limit": 80}, {"config": {"report_interval_s": 10}}, {"locked": True}]
    for patch in patches:
        assert (await http.patch(f"/api/v1/vehicles/{v}/twin/desired", json=patch)).status_code == 200
    commands = [{"name": name, "args": {}} for name in ("unlock", "honk", "immobilise")]
    for n, command in enumerate(commands, start=1):
        await hub.broker.publish(f"vehicles/{v}/commands/cmd-{n}", json.dumps(command).encode(), qos=1)
    twin = (await http.get(f"/api/v1/vehicles/{v}/twin")).json()

    back = await clients(v, clean_session=False, username=v).connect()
    got = await _drain(back, 7)
    topics = [topic.removeprefix(f"vehicles/{v}/") for topic, _ in got]
    assert topics == [*["twin/delta"] * 3, "commands/cmd-1", "commands/cmd-2", "commands/cmd-3", "twin/delta"]
    assert [payload for _, payload in got[3:6]] == commands
    queued_versions = [payload["version"] for _, payload in got[:3]]  # type: ignore[index]
    assert queued_versions == sorted(queued_versions)
    assert got[-1][1] == {
        "version": twin["version"],
        "delta": {"charge_limit": 80, "config": {"report_interval_s": 10}, "locked": True},
    }
    await asyncio.sleep(0.3)
    assert back.messages.empty(), "something was delivered twice"


async def test_qos2_telemetry_is_committed_when_the_flow_completes(hub, http) -> None:
    """A QoS 2 telemetry message is in history once PUBCOMP arrives (PUBREC waits for the commit), stored once."""
    v = vid()
    completed = threading.Event()
    client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=v)
    client.on_publish = lambda *_: completed.set()
    client.connect("127.0.0.1", hub.mqtt_port)
    client.loop_start()
    try:
        info = client.publish(f"vehicles/{v}/telemetry", json.dumps({"odometer_km": 1234, "seq": 7}), qos=2)
        assert await asyncio.to_thread(completed.wait, 10)
        assert info.is_published()
        rows = (await http.get(f"/api/v1/vehicles/{v}/history")).json()["items"]
        # The hub adds the meters it derives to the row; what the vehicle sent is there as sent.
        assert [(r["seq"], r["data"]["odometer_km"]) for r in rows] == [(7, 1234)]
    finally:
        client.disconnect()
        await asyncio.to_thread(client.loop_stop)
