"""Alerts end to end: telemetry from real MQTT clients, alerts on subscribed alert topics, HTTP actions."""

import asyncio
import time

import pytest

from tests.helpers import eventually


async def put_rule(http, name: str, **body) -> dict:
    response = await http.put(f"/api/v1/rules/{name}", json=body)
    assert response.status_code in (200, 201), response.text
    return response.json()


async def watcher_and_vehicle(hub, clients, vid: str):
    watcher = await clients(hub.mqtt_port).connect()
    await watcher.subscribe("alerts/#")
    vehicle = await clients(hub.mqtt_port, vid).connect()
    return watcher, vehicle


async def assert_no_message(client, suffix: str, wait_s: float) -> None:
    with pytest.raises(TimeoutError):
        await client.next_message(suffix, wait_s=wait_s)


async def test_alert_raised_acknowledged_and_cleared(hub, http, clients, vid, rule_name):
    """A hot battery raises an alert on its topic; HTTP acknowledges it; cool telemetry clears it."""
    await put_rule(
        http,
        rule_name,
        when="battery.temp_c > 60",
        clear_when="battery.temp_c < 50",
        severity="critical",
        message="Battery at {battery.temp_c} C",
    )
    watcher, vehicle = await watcher_and_vehicle(hub, clients, vid)
    await vehicle.publish_and_wait(f"vehicles/{vid}/telemetry", {"battery": {"temp_c": 72.5}})

    topic, raised = await watcher.next_message(f"/{rule_name}/{vid}")
    assert topic == f"alerts/default/critical/{rule_name}/{vid}"
    assert raised["event"] == "raised"
    assert raised["state"] == "active"
    assert raised["message"] == "Battery at 72.5 C"
    assert raised["values"] == {"battery.temp_c": 72.5}

    response = await http.post(f"/api/v1/alerts/{raised['id']}/ack", json={"user": "maria", "note": "on it"})
    assert response.status_code == 200, response.text
    _, acked = await watcher.next_message(f"/{rule_name}/{vid}")
    assert acked["event"] == "acknowledged"
    assert (acked["acknowledged_by"], acked["note"]) == ("maria", "on it")

    await vehicle.publish_and_wait(f"vehicles/{vid}/telemetry", {"battery": {"temp_c": 55}})
    await vehicle.publish_and_wait(f"vehicles/{vid}/telemetry", {"battery": {"temp_c": 45}})
    _, cleared = await watcher.next_message(f"/{rule_name}/{vid}")
    assert cleared["event"] == "cleared"
    assert cleared["id"] == raised["id"]
    assert cleared["cleared_by"] == "condition"
    assert cleared["clear_values"] == {"battery.temp_c": 45}

    listed = (await http.get("/api/v1/alerts", params={"vehicle": vid})).json()["items"]
    assert [(a["id"], a["state"], a["acknowledged_by"]) for a in listed] == [(raised["id"], "cleared", "maria")]


async def test_manual_clear_and_filters(hub, http, clients, vid, rule_name):
    """An alert cleared by hand is published and filtered by state, severity, rule and time."""
    await put_rule(http, rule_name, when="speed > 120", severity="major")
    watcher, vehicle = await watcher_and_vehicle(hub, clients, vid)
    before = time.time()
    await vehicle.publish_and_wait(f"vehicles/{vid}/telemetry", {"speed": 150})
    _, raised = await watcher.next_message(f"/{rule_name}/{vid}")

    open_ = (await http.get("/api/v1/alerts", params={"state": "open", "rule": rule_name})).json()["items"]
    assert [a["id"] for a in open_] == [raised["id"]]
    assert (await http.get("/api/v1/alerts", params={"severity": "info", "rule": rule_name})).json()["items"] == []
    later = (await http.get("/api/v1/alerts", params={"from": str(time.time() + 60)})).json()["items"]
    assert later == []
    since = (await http.get("/api/v1/alerts", params={"from": str(before - 1), "vehicle": vid})).json()["items"]
    assert len(since) == 1
    earlier = (await http.get("/api/v1/alerts", params={"to": str(before - 1), "vehicle": vid})).json()["items"]
    assert earlier == []
    window = {"from": "2000-01-01T00:00:00Z", "to": str(time.time() + 60), "vehicle": vid, "state": "active"}
    assert [a["id"] for a in (await http.get("/api/v1/alerts", params=window)).json()["items"]] == [raised["id"]]
    acked = (await http.get("/api/v1/alerts", params={"state": "acknowledged", "vehicle": vid})).json()["items"]
    assert acked == []
    bad = await http.get("/api/v1/alerts", params={"state": "burning"})
    assert bad.status_code == 422
    assert "active, acknowledged, cleared or open" in bad.json()["detail"]

    response = await http.post(f"/api/v1/alerts/{raised['id']}/clear", json={"user": "ops", "note": "sensor fault"})
    assert response.status_code == 200
    _, cleared = await watcher.next_message(f"/{rule_name}/{vid}")
    assert (cleared["event"], cleared["cleared_by"], cleared["clear_note"]) == ("cleared", "ops", "sensor fault")
    stored = (await http.get(f"/api/v1/alerts/{raised['id']}")).json()
    assert (stored["state"], stored["cleared_by"], stored["clear_note"]) == ("cleared", "ops", "sensor fault")
    again = await http.post(f"/api/v1/alerts/{raised['id']}/ack", json={"user": "ops"})
    assert again.status_code == 409
    assert again.headers["content-type"].startswith("application/problem+json")
    missing = await http.post("/api/v1/alerts/nope/ack", json={"user": "ops"})
    assert missing.status_code == 404


async def test_for_window_raises_after_the_duration(hub, http, clients, vid, rule_name):
    """With `for`, the alert comes only after the condition held that long, stamped with when it began."""
    await put_rule(http, rule_name, when="battery.temp_c > 60", **{"for": "1s"})
    watcher, vehicle = await watcher_and_vehicle(hub, clients, vid)
    await vehicle.publish_and_wait(f"vehicles/{vid}/telemetry", {"battery": {"temp_c": 70}})
    _, raised = await watcher.next_message(f"/{rule_name}/{vid}", wait_s=5)
    assert raised["event"] == "raised"
    since = (await http.get(f"/api/v1/alerts/{raised['id']}")).json()
    assert since["since"] < since["raised_at"]


async def test_for_window_broken_raises_nothing(hub, http, clients, vid, rule_name):
    """A condition that stops holding inside its `for` window raises no alert."""
    await put_rule(http, rule_name, when="battery.temp_c > 60", **{"for": "1s"})
    watcher, vehicle = await watcher_and_vehicle(hub, clients, vid)
    await vehicle.publish_and_wait(f"vehicles/{vid}/telemetry", {"battery": {"temp_c": 70}})
    await vehicle.publish_and_wait(f"vehicles/{vid}/telemetry", {"battery": {"temp_c": 40}})
    await assert_no_message(watcher, f"/{rule_name}/{vid}", wait_s=2)
    assert (await http.get("/api/v1/alerts", params={"rule": rule_name})).json()["items"] == []


async def test_no_data_for_raises_when_silent_and_clears_on_data(hub, http, clients, vid, rule_name):
    """`no_data_for` fires from the timer heap after the vehicle goes silent, and clears when data returns."""
    await put_rule(http, rule_name, when='no_data_for("gps") > 1s', severity="minor")
    watcher, vehicle = await watcher_and_vehicle(hub, clients, vid)
    await vehicle.publish_and_wait(f"vehicles/{vid}/telemetry", {"gps": {"lat": 19.43, "lon": -99.13}})
    _, raised = await watcher.next_message(f"/{rule_name}/{vid}", wait_s=5)
    assert raised["event"] == "raised"
    await vehicle.publish_and_wait(f"vehicles/{vid}/telemetry", {"gps": {"lat": 19.44, "lon": -99.13}})
    _, cleared = await watcher.next_message(f"/{rule_name}/{vid}", wait_s=5)
    assert (cleared["event"], cleared["id"]) == ("cleared", raised["id"])


async def test_geofence_left_and_entered(hub, http, clients, vid, rule_name):
    """Leaving a circle zone raises `left`; coming back raises `entered` and clears `left`."""
    zone = f"depot-{rule_name}"
    response = await http.put(
        f"/api/v1/zones/{zone}", json={"kind": "circle", "lat": 19.4326, "lon": -99.1332, "radius_m": 500}
    )
    assert response.status_code == 201, response.text
    await put_rule(http, f"{rule_name}-left", when=f'left("{zone}")', clear_when=f'inside("{zone}")')
    await put_rule(http, f"{rule_name}-in", when=f'entered("{zone}")', clear_when=f'not inside("{zone}")')
    watcher, vehicle = await watcher_and_vehicle(hub, clients, vid)
    topic = f"vehicles/{vid}/telemetry"
    await vehicle.publish_and_wait(topic, {"gps": {"lat": 19.4326, "lon": -99.1332}})
    await vehicle.publish_and_wait(topic, {"gps": {"lat": 19.4500, "lon": -99.1332}})
    got, left = await watcher.next_message(vid)
    assert (got, left["event"]) == (f"alerts/default/warning/{rule_name}-left/{vid}", "raised")
    await vehicle.publish_and_wait(topic, {"gps": {"lat": 19.4327, "lon": -99.1332}})
    events = {}
    for _ in range(2):
        got, event = await watcher.next_message(vid)
        events[got.split("/")[3]] = event["event"]
    assert events == {f"{rule_name}-left": "cleared", f"{rule_name}-in": "raised"}


async def test_cooldown_holds_back_the_next_alert(hub, http, clients, vid, rule_name):
    """After a clear, the same rule and vehicle stay quiet for `cooldown`, then alert again."""
    await put_rule(http, rule_name, when="speed > 100", cooldown="1.5s")
    watcher, vehicle = await watcher_and_vehicle(hub, clients, vid)
    topic = f"vehicles/{vid}/telemetry"
    await vehicle.publish_and_wait(topic, {"speed": 130})
    _, first = await watcher.next_message(f"/{rule_name}/{vid}")
    await vehicle.publish_and_wait(topic, {"speed": 50})
    _, cleared = await watcher.next_message(f"/{rule_name}/{vid}")
    assert cleared["event"] == "cleared"
    await vehicle.publish_and_wait(topic, {"speed": 140})
    await assert_no_message(watcher, f"/{rule_name}/{vid}", wait_s=0.5)
    _, second = await watcher.next_message(f"/{rule_name}/{vid}", wait_s=5)
    assert second["event"] == "raised"
    assert second["id"] != first["id"]
    assert second["raised_at"] > cleared["cleared_at"]


async def test_selector_limits_the_rule_to_matching_vehicles(hub, http, clients, vid, rule_name):
    """A selector on tags keeps other vehicles out of the rule."""
    await put_rule(http, rule_name, when="soc < 15", selector={"tags": {"depot": "north"}})
    other = f"{vid}-b"
    watcher = await clients(hub.mqtt_port).connect()
    await watcher.subscribe("alerts/#")
    vehicles = {}
    for vehicle_id, depot in ((other, "south"), (vid, "north")):
        vehicles[vehicle_id] = await clients(hub.mqtt_port, vehicle_id).connect()
        await vehicles[vehicle_id].publish_and_wait(f"vehicles/{vehicle_id}/telemetry", {"soc": 50})
        response = await http.patch(f"/api/v1/vehicles/{vehicle_id}/tags", json={"depot": depot})
        assert response.status_code == 200, response.text
    for vehicle_id, vehicle in vehicles.items():
        await vehicle.publish_and_wait(f"vehicles/{vehicle_id}/telemetry", {"soc": 9})
    _, raised = await watcher.next_message(f"/{rule_name}/{vid}")
    assert raised["vehicle_id"] == vid
    await asyncio.sleep(0.2)
    listed = (await http.get("/api/v1/alerts", params={"rule": rule_name})).json()["items"]
    assert [a["vehicle_id"] for a in listed] == [vid]


async def test_rule_deleted_clears_its_alerts(hub, http, clients, vid, rule_name):
    """Deleting a rule clears its open alerts and publishes that."""
    await put_rule(http, rule_name, when="speed > 10")
    watcher, vehicle = await watcher_and_vehicle(hub, clients, vid)
    await vehicle.publish_and_wait(f"vehicles/{vid}/telemetry", {"speed": 30})
    await watcher.next_message(f"/{rule_name}/{vid}")
    assert (await http.delete(f"/api/v1/rules/{rule_name}")).status_code == 204
    _, cleared = await watcher.next_message(f"/{rule_name}/{vid}")
    assert (cleared["event"], cleared["cleared_by"]) == ("cleared", "rule-deleted")

    async def gone():
        return (await http.get(f"/api/v1/rules/{rule_name}")).status_code == 404

    await eventually(gone)


async def test_connected_follows_the_vehicles_presence(hub, http, clients, vid, rule_name):
    """`not connected()` raises when the vehicle's link stays down past the debounce and clears when it returns."""
    vehicle = await clients(hub.mqtt_port, vid).connect()
    await vehicle.publish_and_wait(f"vehicles/{vid}/telemetry", {"soc": 80})
    await put_rule(http, rule_name, when="not connected()", severity="minor")
    watcher = await clients(hub.mqtt_port).connect()
    await watcher.subscribe("alerts/#")
    await assert_no_message(watcher, f"/{rule_name}/{vid}", wait_s=0.3)
    vehicle.drop()
    _, raised = await watcher.next_message(f"/{rule_name}/{vid}", wait_s=10)
    assert raised["event"] == "raised"
    await clients(hub.mqtt_port, vid).connect()
    _, cleared = await watcher.next_message(f"/{rule_name}/{vid}", wait_s=10)
    assert (cleared["event"], cleared["id"], cleared["cleared_by"]) == ("cleared", raised["id"], "condition")
