"""Reports through a running hub, checked against values computed here from the raw messages sent."""

import csv
import datetime as dt
import io
import itertools
import json
import math

import pytest

from tests.helpers import eventually
from tests.integration.maintenance.conftest import SimDriver
from tests.integration.notifications.servers import Receiver

YESTERDAY = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)
# 02:00 UTC yesterday: still the day before in Los Angeles.
START = dt.datetime.combine(YESTERDAY, dt.time(2, 0), dt.UTC).timestamp()


def haversine_km(a, b):
    p1, p2 = math.radians(a[0]), math.radians(b[0])
    h = math.sin((p2 - p1) / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(math.radians(b[1] - a[1]) / 2) ** 2
    return 2 * 6371.0088 * math.asin(min(1.0, math.sqrt(h)))


def expected_day(messages):
    """The summary of one vehicle's messages, computed independently of the hub."""
    driving = idle = energy = 0.0
    for prev, cur in itertools.pairwise(messages):
        gap = min(cur["ts"] - prev["ts"], 300)
        if prev["speed"] > 3:
            driving += gap
        elif prev["ignition"]:
            idle += gap
        if cur["soc"] < prev["soc"] and not cur["charging"]:
            energy += prev["soc"] - cur["soc"]
    return {
        "distance_km": messages[-1]["odometer_km"] - messages[0]["odometer_km"],
        "driving_h": driving / 3600,
        "idle_h": idle / 3600,
        "max_speed_kmh": max(m["speed"] for m in messages),
        "energy_used_pct": energy,
        "samples": len(messages),
    }


class Recording(SimDriver):
    """A SimDriver that keeps what it sent (with the vehicle's odometer reading)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.sent_messages = []
        inner = self.client.publish

        def publish(topic, payload, qos=1):
            self.sent_messages.append(payload)
            return inner(topic, payload, qos)

        self.client = type("C", (), {"publish": staticmethod(publish)})()


@pytest.fixture
async def driven(hub, http, mqtt):
    """Two simulated vehicles, two hours each from 02:00 UTC yesterday, reporting every 10 s."""
    sims = []
    for n, seed in enumerate((21, 22)):
        sim = Recording(mqtt, f"rep-{n}-{seed}", START, seed=seed, interval_s=10)
        last = await sim.drive(7200, with_odometer=True)
        sims.append((sim, last))
    for sim, last in sims:

        async def caught_up(sim=sim, last=last):
            doc = (await http.get(f"/api/v1/vehicles/{sim.vid}/twin")).json()
            return doc.get("reported", {}).get("odometer_km") == last["odometer_km"]

        await eventually(caught_up, wait_s=60)
    return [sim for sim, _ in sims]


async def test_daily_summary_matches_the_raw_history(http, driven):
    """Distance, driving and idle time, top speed and energy per vehicle and per fleet match a recomputation."""
    response = await http.get("/api/v1/reports/daily", params={"fleet": "default", "date": YESTERDAY.isoformat()})
    assert response.status_code == 200, response.text
    report = response.json()
    rows = {r["vehicle_id"]: r for r in report["items"]}
    for sim in driven:
        want = expected_day(sim.sent_messages)
        got = rows[sim.vid]
        assert got["distance_source"] == "vehicle_odometer"
        assert got["samples"] == want["samples"]
        assert got["distance_km"] == pytest.approx(want["distance_km"], abs=2e-3)
        assert got["driving_h"] == pytest.approx(want["driving_h"], abs=1e-3)
        assert got["idle_h"] == pytest.approx(want["idle_h"], abs=1e-3)
        assert got["max_speed_kmh"] == want["max_speed_kmh"]
        assert got["energy_used_pct"] == pytest.approx(want["energy_used_pct"], abs=2e-3)
        assert got["first_seen"].endswith("+00:00")
    [fleet] = report["fleets"]
    assert fleet["vehicles"] == 2
    assert fleet["distance_km"] == pytest.approx(sum(rows[s.vid]["distance_km"] for s in driven), abs=2e-3)


async def test_days_follow_the_time_zone_and_csv_has_the_same_rows(http, driven):
    """In Los Angeles the drive fell on the day before; the CSV carries the JSON's rows, with local times."""
    before = (YESTERDAY - dt.timedelta(days=1)).isoformat()
    la = {"fleet": "default", "tz": "America/Los_Angeles"}
    empty = (await http.get("/api/v1/reports/daily", params={**la, "date": YESTERDAY.isoformat()})).json()
    assert empty["items"] == []
    local = (await http.get("/api/v1/reports/daily", params={**la, "date": before})).json()
    assert {r["vehicle_id"] for r in local["items"]} == {s.vid for s in driven}
    assert all(r["first_seen"].endswith("-08:00") for r in local["items"])
    two_days = (await http.get("/api/v1/reports/daily", params={**la, "date": before, "days": 2})).json()
    assert two_days["days"] == [before, YESTERDAY.isoformat()]
    assert two_days["items"] == local["items"]
    text = (await http.get("/api/v1/reports/daily", params={**la, "date": before, "format": "csv"})).text
    vehicles_part = text.split("\n\n")[0]
    parsed = list(csv.DictReader(io.StringIO(vehicles_part)))
    assert [r["vehicle_id"] for r in parsed] == [r["vehicle_id"] for r in local["items"]]
    assert [float(r["distance_km"]) for r in parsed] == [r["distance_km"] for r in local["items"]]


async def test_stops_and_zone_visits(http, driven):
    """Stops lie within the period and last at least the dwell; a depot zone at the start shows its visit."""
    sim = driven[0]
    first = sim.sent_messages[0]["gps"]
    zone = {"kind": "circle", "lat": first["lat"], "lon": first["lon"], "radius_m": 200}
    assert (await http.put("/api/v1/zones/depot-rep", json=zone)).status_code in (200, 201)
    span = {"vehicle": sim.vid, "from": START, "to": START + 7300}
    stops = (await http.get("/api/v1/reports/stops", params=span)).json()["items"]
    for stop in stops:
        assert stop["duration_s"] >= 180
    visits = (await http.get("/api/v1/reports/visits", params=span)).json()["items"]
    depot = [v for v in visits if v["zone"] == "depot-rep"]
    # Independently: the first message outside 200 m of the start ends the first stay.
    centre = (first["lat"], first["lon"])
    outside = next(
        (m for m in sim.sent_messages if haversine_km(centre, (m["gps"]["lat"], m["gps"]["lon"])) > 0.2), None
    )
    assert depot, "the vehicle starts inside the depot"
    assert depot[0]["entered"] is None
    if outside is None:
        assert depot[0]["left"] is None
    else:
        left = dt.datetime.fromisoformat(depot[0]["left"]).timestamp()
        assert left == pytest.approx(outside["ts"], abs=1e-3)


async def test_scheduled_report_goes_to_the_channel_once(hub, http, driven):
    """A daily schedule sends yesterday's CSV to a webhook channel; sending again for the period queues nothing."""
    receiver = Receiver().start()
    try:
        channel = {"kind": "webhook", "url": receiver.url, "secret": "0123456789abcdef0123"}
        assert (await http.put("/api/v1/notifications/channels/ops", json=channel)).status_code == 201
        schedule = {"fleet": "default", "channel": "ops", "period": "daily", "tz": "UTC", "at_hour": 0}
        assert (await http.put("/api/v1/reports/schedules/daily-default", json=schedule)).status_code == 201
        queued = await hub.reports.run_schedules()
        again = (await http.post("/api/v1/reports/schedules/daily-default/send")).json()
        assert (queued, again["queued"], again["period"]) == (1, False, YESTERDAY.isoformat())
        await eventually(lambda: _some(receiver.accepted), wait_s=30)
    finally:
        receiver.stop()
    [delivery] = receiver.accepted
    payload = json.loads(delivery.body)
    assert payload["kind"] == "report"
    report = payload["items"][0]
    assert report["period"] == YESTERDAY.isoformat()
    rows = list(csv.DictReader(io.StringIO(report["csv"].split("\n\n")[0])))
    assert {r["vehicle_id"] for r in rows} == {s.vid for s in driven}


async def _some(items):
    return bool(items)
