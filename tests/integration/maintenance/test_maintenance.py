"""Maintenance end to end: the simulator drives vehicles through a real hub past distance and time thresholds."""

import time

from tests.helpers import eventually
from tests.integration.maintenance.conftest import SimDriver


async def _twin_meters(http, vid):
    doc = (await http.get(f"/api/v1/vehicles/{vid}/twin")).json()
    return doc["reported"].get("meters", {})


async def _alerts(http, rule, **params):
    return (await http.get("/api/v1/alerts", params={"rule": rule, **params})).json()["items"]


async def test_odometer_from_gps_is_within_one_percent_of_the_route(hub, http, mqtt, vid):
    """Two hours of simulated driving without an odometer reading: the hub's GPS odometer is within 1 %."""
    sim = SimDriver(mqtt, vid, time.time() - 7200, seed=11)
    last = await sim.drive(7200 - 10)
    assert sim.travelled_km > 10, "the simulated vehicle should have driven somewhere"

    async def settled():
        meters = await _twin_meters(http, vid)
        return meters if meters.get("odometer_km") is not None else None

    await eventually(settled, wait_s=60)
    await eventually(lambda: _caught_up(http, vid, last), wait_s=60)
    meters = await _twin_meters(http, vid)
    assert abs(meters["odometer_km"] - sim.travelled_km) / sim.travelled_km < 0.01
    # Engine hours: the sim's ignition is on while it drives; some of the two hours, not all of them.
    assert 0 < meters["engine_hours"] < 2.0
    # The values are in history too, as any reported value.
    rows = (await http.get(f"/api/v1/vehicles/{vid}/history", params={"fields": "meters.odometer_km"})).json()
    assert any(
        "meters" in row.get("data", row) or "meters.odometer_km" in row.get("data", row) for row in rows["items"]
    )


async def _caught_up(http, vid, last):
    """The twin shows the last message sent (its time and place)."""
    doc = (await http.get(f"/api/v1/vehicles/{vid}/twin")).json()
    reported = doc.get("reported", {})
    return reported.get("gps") == last["gps"] and reported.get("soc") == last["soc"]


async def test_distance_schedule_fires_once_service_resets_and_corrections_are_audited(hub, http, mqtt, vid):
    """Past the due point one overdue alert is raised (once); a service clears it; a correction is audited."""
    listener = type(mqtt)(hub.mqtt_port)
    await listener.connect()
    await listener.subscribe("alerts/#")
    sim = SimDriver(mqtt, vid, time.time() - 6 * 3600, seed=3)
    last = await sim.drive(30)
    await eventually(lambda: _caught_up(http, vid, last), wait_s=30)
    put = await http.put("/api/v1/maintenance/schedules/oil", json={"name": "Oil", "every_km": 3, "due_soon_km": 1})
    assert put.status_code == 201, put.text
    await hub.maintenance.check()
    start = (await http.get("/api/v1/maintenance/due", params={"vehicle": vid})).json()["items"][0]
    assert start["status"] == "ok"
    assert start["next_due_km"] == start["odometer_km"] + 3

    # Drive until the vehicle is well past its due point.
    while sim.travelled_km < 5:
        await sim.drive(600)
    _, raised = await listener.next_message(f"/maintenance.oil.overdue/{vid}", wait_s=30)
    assert raised["event"] == "raised"
    assert raised["values"]["remaining_km"] <= 0
    sweeps = hub.maintenance.counters.sweeps
    await sim.drive(600)
    await eventually(lambda: _sweeps_since(hub, sweeps, 5), wait_s=30)
    overdue = await _alerts(http, "maintenance.oil.overdue")
    assert [a["state"] for a in overdue] == ["active"]
    due_soon = await _alerts(http, "maintenance.oil.due_soon")
    assert [a["state"] for a in due_soon] in ([], ["cleared"])
    due = (await http.get("/api/v1/maintenance/due", params={"status": "overdue"})).json()["items"]
    assert [d["vehicle_id"] for d in due] == [vid]

    # A service closes the interval: the alert clears and the next interval starts here.
    service = await http.post(f"/api/v1/vehicles/{vid}/services", json={"schedule": "oil", "note": "oil and filter"})
    assert service.status_code == 201, service.text
    cleared = (await http.get(f"/api/v1/alerts/{overdue[0]['id']}")).json()
    assert (cleared["state"], cleared["cleared_by"]) == ("cleared", "service")
    await hub.maintenance.check()
    after = (await http.get("/api/v1/maintenance/due", params={"vehicle": vid})).json()["items"][0]
    assert after["status"] == "ok"
    assert abs(after["next_due_km"] - (service.json()["odometer_km"] + 3)) < 1e-6
    records = (await http.get(f"/api/v1/vehicles/{vid}/services")).json()["items"]
    assert [r["id"] for r in records] == [service.json()["id"]]

    # A correction is audited and reaches the twin with the vehicle's next message.
    fixed = await http.post(f"/api/v1/vehicles/{vid}/meters/corrections", json={"odometer_km": 50000, "note": "dash"})
    assert fixed.status_code == 201, fixed.text
    audit = (await http.get("/api/v1/audit", params={"action": "maintenance.meters.correct"})).json()["items"]
    assert [(a["vehicle_id"], a["detail"]["odometer_km"]) for a in audit] == [(vid, 50000)]
    await sim.drive(30)

    async def corrected():
        return 50000 <= (await _twin_meters(http, vid)).get("odometer_km", 0) < 50001

    await eventually(corrected, wait_s=30)
    listener.close()


async def _sweeps_since(hub, before, n):
    return hub.maintenance.counters.sweeps >= before + n


async def test_time_schedule_goes_due_soon_then_overdue(hub, http, mqtt, vid):
    """A schedule by days raises due soon, then overdue (clearing due soon), as wall-clock time passes."""
    sim = SimDriver(mqtt, vid, time.time() - 600, seed=5)
    last = await sim.drive(60)
    await eventually(lambda: _caught_up(http, vid, last), wait_s=30)
    # 6.9 s long, due soon for its last 4.3 s.
    body = {"name": "Inspection", "every_days": 0.00008, "due_soon_days": 0.00005, "severity_overdue": "critical"}
    assert (await http.put("/api/v1/maintenance/schedules/inspect", json=body)).status_code == 201

    async def raised(rule):
        return [a for a in await _alerts(http, rule) if a["vehicle_id"] == vid]

    soon = await eventually(lambda: raised("maintenance.inspect.due_soon"), wait_s=30)
    over = await eventually(lambda: raised("maintenance.inspect.overdue"), wait_s=30)
    assert over[0]["severity"] == "critical"
    soon = await raised("maintenance.inspect.due_soon")
    assert (soon[0]["state"], soon[0]["cleared_by"]) == ("cleared", "overdue")


async def test_rules_may_not_take_maintenance_names(http):
    """A rule named like a maintenance alert is refused (422), so the two never share an alert slot."""
    rule = {"when": "speed > 100", "severity": "warning", "message": "fast"}
    refused = await http.put("/api/v1/rules/maintenance.oil.overdue", json=rule)
    assert refused.status_code == 422, refused.text
    assert "belong to alerts the hub raises" in refused.text
    assert (await http.put("/api/v1/rules/fast", json=rule)).status_code == 201
