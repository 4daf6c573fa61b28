"""The vehicle model: movement, battery, phases and reporting."""

from __future__ import annotations

import itertools
import random
from typing import Any

import pytest

from firmware_sim import CITIES, Phase, Vehicle, distance_km, get_city

T0 = 1_800_000_000.0


def _run(vehicle: Vehicle, rng: random.Random, steps: int, now: float = T0) -> list[tuple[float, dict[str, Any]]]:
    """Step with irregular gaps, as a real loop would, and collect (now, telemetry)."""
    out = []
    for _ in range(steps):
        now += rng.choice((0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 120.0))
        vehicle.step(now)
        out.append((now, vehicle.telemetry(now)))
    return out


@pytest.mark.parametrize("slug", sorted(CITIES))
@pytest.mark.parametrize("seed", range(4))
def test_stays_inside_the_city_and_keeps_its_invariants(slug: str, seed: int) -> None:
    """Over thousands of steps the vehicle stays in the bounding box, soc in 0..100, odometer never falls."""
    city = get_city(slug)
    vehicle = Vehicle(city, random.Random(seed), T0)
    previous_odometer = 0.0
    for _, report in _run(vehicle, random.Random(seed + 100), 3_000):
        assert city.contains(report["gps"]["lat"], report["gps"]["lon"])
        assert 0.0 <= report["soc"] <= 100.0
        assert report["odometer_km"] >= previous_odometer
        assert 0.0 <= report["heading"] < 360.0
        assert report["speed"] >= 0.0
        previous_odometer = report["odometer_km"]


def test_parked_means_stopped_with_ignition_off() -> None:
    """Whenever the model is parked it reports speed 0 and ignition off; when driving, ignition on."""
    vehicle = Vehicle(get_city("singapore"), random.Random(7), T0)
    rng = random.Random(8)
    phases = set()
    now = T0
    for _ in range(2_000):
        now += rng.choice((0.5, 2.0, 5.0, 30.0))
        vehicle.step(now)
        report = vehicle.telemetry(now)
        phases.add(vehicle.phase)
        if vehicle.phase is Phase.PARKED:
            assert report["speed"] == 0.0
            assert report["ignition"] is False
        else:
            assert report["ignition"] is True
            assert report["charging"] is False
    assert phases == {Phase.PARKED, Phase.DRIVING}


def test_speed_and_heading_follow_the_movement() -> None:
    """Reported speed is the distance driven over the step; heading changes only by moving."""
    vehicle = Vehicle(get_city("malmo"), random.Random(3), T0)
    now = T0
    checked = 0
    for _ in range(3_000):
        before_odo, before_heading = vehicle.odometer_km, vehicle.heading_deg
        was_driving = vehicle.phase is Phase.DRIVING
        now += 2.0
        vehicle.step(now)
        driven = vehicle.odometer_km - before_odo
        if was_driving and vehicle.phase is Phase.DRIVING:
            assert vehicle.speed_kmh == pytest.approx(driven / 2.0 * 3600.0)
            checked += 1
        if driven == 0.0:
            assert vehicle.heading_deg == before_heading
    assert checked > 100


def test_position_moves_no_further_than_the_odometer() -> None:
    """The straight-line move between reports never exceeds the distance driven."""
    vehicle = Vehicle(get_city("mexico-city"), random.Random(11), T0)
    reports = _run(vehicle, random.Random(12), 1_500)
    for (_, a), (_, b) in itertools.pairwise(reports):
        moved = distance_km(a["gps"]["lat"], a["gps"]["lon"], b["gps"]["lat"], b["gps"]["lon"])
        # Slack for rounding (6 decimals of a degree, 3 of a km) and the flat-earth approximation.
        assert moved <= (b["odometer_km"] - a["odometer_km"]) * 1.001 + 0.002


def test_battery_drains_while_driving_and_charges_only_when_parked() -> None:
    """soc falls only by driving and rises only while charging, which stops at the charge limit."""
    vehicle = Vehicle(get_city("mexico-city"), random.Random(5), T0)
    now = T0
    charged = drained = False
    for _ in range(20_000):
        soc, odo, charging = vehicle.soc, vehicle.odometer_km, vehicle.charging
        now += 5.0
        vehicle.step(now)
        if vehicle.soc > soc:
            assert charging
            assert vehicle.soc <= vehicle.settings.charge_limit
            charged = True
        elif vehicle.soc < soc:
            assert vehicle.odometer_km > odo
            drained = True
        if vehicle.charging:
            assert vehicle.phase is Phase.PARKED
    assert charged
    assert drained


def test_seq_is_monotonic_and_ts_is_the_clock() -> None:
    """Each telemetry takes the next seq and carries the device time it was made at."""
    vehicle = Vehicle(get_city("malmo"), random.Random(1), T0)
    reports = _run(vehicle, random.Random(2), 200)
    seqs = [report["seq"] for _, report in reports]
    assert seqs == list(range(1, 201))
    assert all(report["ts"] == pytest.approx(now, abs=1e-3) for now, report in reports)


def test_telemetry_has_the_contract_fields() -> None:
    """Telemetry carries every field the hub and the rules expect, JSON-able."""
    vehicle = Vehicle(get_city("malmo"), random.Random(1), T0, report_interval_s=5.0)
    report = vehicle.telemetry(T0)
    assert set(report) == {
        "ts", "seq", "gps", "speed", "heading", "soc", "charging", "odometer_km",
        "ignition", "doors", "charge_limit", "config",
    }  # fmt: skip
    assert set(report["gps"]) == {"lat", "lon"}
    assert isinstance(report["doors"]["locked"], bool)
    assert report["config"] == {"report_interval_s": 5}
    assert isinstance(report["config"]["report_interval_s"], int)


def test_same_seed_and_clock_give_the_same_run() -> None:
    """Two vehicles with the same seed, stepped at the same times, report the same things."""
    city = get_city("singapore")
    a = _run(Vehicle(city, random.Random(42), T0), random.Random(1), 500)
    b = _run(Vehicle(city, random.Random(42), T0), random.Random(1), 500)
    assert a == b
    c = _run(Vehicle(city, random.Random(43), T0), random.Random(1), 500)
    assert a != c


def test_a_clock_going_backwards_does_not_move_the_vehicle() -> None:
    """Stepping to an earlier time leaves position, odometer and battery as they were."""
    vehicle = Vehicle(get_city("mexico-city"), random.Random(9), T0)
    vehicle.step(T0 + 600)
    before = vehicle.telemetry(T0 + 600)
    vehicle.step(T0 + 300)
    after = vehicle.telemetry(T0 + 600)
    for key in ("gps", "odometer_km", "soc"):
        assert after[key] == before[key]


def test_one_long_gap_moves_like_many_short_steps() -> None:
    """A long gap is simulated in slices, so the vehicle still follows its route and parks on the way."""
    city = get_city("malmo")
    vehicle = Vehicle(city, random.Random(21), T0)
    vehicle.step(T0 + 6 * 3600)
    report = vehicle.telemetry(T0 + 6 * 3600)
    assert city.contains(report["gps"]["lat"], report["gps"]["lon"])
    assert 0.0 <= report["soc"] <= 100.0


def test_an_empty_battery_parks_and_charges() -> None:
    """A vehicle that runs flat stops, and does not drive off again until it has charged."""
    vehicle = Vehicle(get_city("mexico-city"), random.Random(4), T0)
    vehicle.soc = 0.5
    now = T0
    for _ in range(2_000):
        now += 5.0
        vehicle.step(now)
        if vehicle.phase is Phase.PARKED and vehicle.soc < 8.0:
            assert vehicle.charging
    assert vehicle.soc > 0.5


def test_lowering_the_charge_limit_below_soc_stops_charging() -> None:
    """A charge limit under the current soc ends a charging session at once."""
    vehicle = Vehicle(get_city("mexico-city"), random.Random(4), T0)
    vehicle.soc, vehicle.charging, vehicle.phase = 70.0, True, Phase.PARKED
    vehicle.apply_desired({"charge_limit": 60})
    assert vehicle.charging is False
    assert vehicle.telemetry(T0)["charge_limit"] == 60
