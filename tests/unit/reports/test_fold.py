"""The report folds on hand-made rows: time credited to what the vehicle was doing, capped per gap."""

from reports import DayFold, VisitFold
from rules import Circle


def test_driving_idle_energy_and_distance():
    """Driving while faster than the threshold, idling with the ignition on, soc drops only when not charging."""
    fold = DayFold("v", "f", "2026-12-05", moving_kmh=3, max_gap_s=300)
    rows = [
        (0, {"speed": 30, "ignition": True, "soc": 80, "meters": {"odometer_km": 100.0}}),
        (60, {"speed": 0, "ignition": True, "soc": 79}),
        (120, {"speed": 0, "ignition": False, "soc": 79, "charging": True}),
        (1000, {"speed": 0, "ignition": False, "soc": 85, "charging": True}),
        (1060, {"speed": 40, "ignition": True, "soc": 84, "charging": False, "meters.odometer_km": 101.5}),
    ]
    for ts, data in rows:
        fold.feed(ts, data)
    day = fold.finish(alerts=2)
    assert (day.driving_s, day.idle_s) == (60, 60)
    assert (day.distance_km, day.distance_source) == (1.5, "odometer")
    assert (day.max_speed_kmh, day.avg_speed_kmh) == (40, 30)
    assert day.energy_used_pct == 2
    assert day.alerts == 2


def test_visits_inside_at_start_and_at_end():
    """A stay open at the start has no entry time; one still open at the end has no exit time."""
    zones = {"z": Circle(lat=0.0, lon=0.0, radius_m=100)}
    fold = VisitFold("v", zones, 0.0, 1000.0)
    for ts, lat in ((0, 0.0), (100, 0.01), (200, 0.0), (300, 0.0)):
        fold.feed(ts, {"gps": {"lat": lat, "lon": 0.0}})
    visits = fold.finish()
    assert [(v.entered, v.left, v.dwell_s) for v in visits] == [(None, 100, 100), (200, None, 800)]
