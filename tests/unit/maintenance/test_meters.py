"""The meter deriver: odometer and engine hours from readings, GPS and ignition time."""

import math

from maintenance import MaintenanceSettings, MeterDeriver, distance_m
from twin import PATH_SEP, ReportedEntry, TwinState


def twin(vid="v1", **reported) -> TwinState:
    state = TwinState(vehicle_id=vid, created_at=0.0, updated_at=0.0)
    for path, (value, ts) in reported.items():
        state.reported[path.replace(".", PATH_SEP)] = ReportedEntry(value, ts)
    return state


def feed(deriver: MeterDeriver, state: TwinState, ts: float, data: dict) -> dict:
    return deriver.enrich(state, ts, data) or {}


def point(lat: float, lon: float, **more) -> dict:
    return {"gps": {"lat": lat, "lon": lon}, **more}


def test_vehicle_reading_wins_and_offset_applies_after_correction():
    """A message with the vehicle's own odometer sets the hub's value; a correction becomes an offset."""
    d = MeterDeriver()
    state = twin()
    assert feed(d, state, 10, {"odometer_km": 1000.0})["meters"]["odometer_km"] == 1000.0
    d.correct("v1", 1500.0, None)
    out = feed(d, state, 20, {"odometer_km": 1001.0})["meters"]
    assert out["odometer_km"] == 1501.0
    assert out["odometer_offset_km"] == 500.0


EXACT = MaintenanceSettings(odometer_step_km=0, engine_hours_step=0)


def test_gps_distance_counts_while_driving():
    """Without a reading, consecutive fixes while the ignition is on add their great-circle distance."""
    d = MeterDeriver(EXACT)
    state = twin()
    lat, total = 40.0, 0.0
    feed(d, state, 0, point(lat, -3.0, ignition=True, speed=40))
    for i in range(1, 101):
        new_lat = 40.0 + i * 0.001
        total += distance_m(lat, -3.0, new_lat, -3.0)
        lat = new_lat
        out = feed(d, state, i * 10, point(lat, -3.0, ignition=True, speed=40))
    assert math.isclose(out["meters"]["odometer_km"], total / 1000, abs_tol=1e-3)
    assert out["meters"]["engine_hours"] == round(1000 / 3600, 4)


def test_jitter_while_parked_is_not_distance():
    """Fixes wandering a few metres around a parked vehicle add nothing; a real move away does."""
    d = MeterDeriver(MaintenanceSettings(jitter_m=25))
    state = twin()
    feed(d, state, 0, point(40.0, -3.0, ignition=False, speed=0))
    for i in range(1, 200):
        wobble = 0.00005 * (1 if i % 2 else -1)  # about 5.5 m either side
        feed(d, state, i * 10, point(40.0 + wobble, -3.0 - wobble, ignition=False, speed=0))
    assert d.values("v1")[0] == 0.0
    feed(d, state, 3000, point(40.001, -3.0, ignition=False, speed=0))
    assert d.values("v1")[0] > 0.1


def test_jump_after_offline_gap_is_skipped_and_counting_resumes():
    """A step implying more than max_speed_kmh is skipped; the next steps count from the new place."""
    d = MeterDeriver(MaintenanceSettings(max_speed_kmh=200))
    state = twin()
    feed(d, state, 0, point(40.0, -3.0, ignition=True))
    feed(d, state, 10, point(41.0, -3.0, ignition=True))  # 111 km in 10 s
    assert d.values("v1")[0] == 0.0
    assert d.meter("v1").jumps == 1
    feed(d, state, 20, point(41.001, -3.0, ignition=True))
    assert math.isclose(d.values("v1")[0], distance_m(41.0, -3.0, 41.001, -3.0) / 1000, rel_tol=1e-6)


def test_engine_hours_only_while_on_and_capped_per_gap():
    """Engine time accrues while ignition was on, at most max_gap_s per step; off time adds nothing."""
    d = MeterDeriver(MaintenanceSettings(max_gap_s=300))
    state = twin()
    feed(d, state, 0, {"ignition": True})
    feed(d, state, 60, {"ignition": True})
    feed(d, state, 3660, {"ignition": False})  # an hour of silence counts 300 s
    feed(d, state, 7200, {"ignition": False})
    assert math.isclose(d.values("v1")[1], (60 + 300) / 3600, rel_tol=1e-9)


def test_older_messages_derive_nothing():
    """Backfill older than the newest message seen adds no distance and no time."""
    d = MeterDeriver()
    state = twin()
    feed(d, state, 100, point(40.0, -3.0, ignition=True))
    feed(d, state, 110, point(40.001, -3.0, ignition=True))
    before = d.values("v1")
    assert d.enrich(state, 105, point(40.5, -3.0, ignition=True)) is None
    assert d.values("v1") == before


def test_state_is_rebuilt_from_the_twin_after_a_restart():
    """A new deriver carries on from the twin's meters and last fix instead of starting at zero."""
    state = twin(
        **{
            "meters.odometer_km": (1234.5, 100.0),
            "meters.engine_hours": (77.0, 100.0),
            "gps.lat": (40.0, 100.0),
            "gps.lon": (-3.0, 100.0),
            "ignition": (True, 100.0),
        }
    )
    d = MeterDeriver(EXACT)
    out = feed(d, state, 110, point(40.001, -3.0, ignition=True))["meters"]
    assert math.isclose(out["odometer_km"], 1234.5 + distance_m(40.0, -3.0, 40.001, -3.0) / 1000, abs_tol=1e-3)
    assert math.isclose(out["engine_hours"], 77.0 + 10 / 3600, abs_tol=1e-4)


def test_only_changes_are_added():
    """A parked vehicle's messages carry no meters once the values stop changing."""
    d = MeterDeriver()
    state = twin()
    assert feed(d, state, 0, point(40.0, -3.0, ignition=False))
    assert d.enrich(state, 10, point(40.0, -3.0, ignition=False)) is None


def test_values_are_added_once_they_moved_a_step():
    """With 0.1 km and 0.01 h steps, small moves stay inside until they add up; the inside value stays exact."""
    d = MeterDeriver(MaintenanceSettings(odometer_step_km=0.1, engine_hours_step=0.01))
    state = twin()
    assert feed(d, state, 0, point(40.0, -3.0, ignition=True))["meters"] == {"odometer_km": 0.0, "engine_hours": 0.0}
    assert d.enrich(state, 5, point(40.0005, -3.0, ignition=True)) is None  # 56 m, 5 s
    out = feed(d, state, 10, point(40.001, -3.0, ignition=True))["meters"]  # 111 m in all
    assert set(out) == {"odometer_km"}
    assert math.isclose(d.values("v1")[0], distance_m(40.0, -3.0, 40.001, -3.0) / 1000, rel_tol=1e-6)
