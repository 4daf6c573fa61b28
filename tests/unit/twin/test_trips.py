"""Trips and stops from ignition, speed, position, odometer and charge history."""

import pytest

from twin import HistoryRow, Position, TripSettings
from twin.trips import derive_trips, haversine_km

T0 = 1_700_000_000.0


def _rows(*points: tuple[float, dict]) -> list[HistoryRow]:
    return [HistoryRow("veh", T0 + t, T0 + t, None, data) for t, data in points]


def _drive(start: float, minutes: int, *, lat0: float = 19.40, soc0: float = 80.0, odo0: float | None = None):
    """One row a minute while driving north at ~1.1 km a minute, then the stop row."""
    out = []
    for k in range(minutes):
        data = {"ignition": True, "speed": 60.0 + k, "gps": {"lat": lat0 + 0.01 * k, "lon": -99.1}, "soc": soc0 - k}
        if odo0 is not None:
            data["odometer_km"] = odo0 + 1.1 * k
        out.append((start + 60 * k, data))
    end = start + 60 * minutes
    stop = {"ignition": False, "speed": 0.0, "gps": {"lat": lat0 + 0.01 * minutes, "lon": -99.1}, "soc": soc0 - minutes}
    if odo0 is not None:
        stop["odometer_km"] = odo0 + 1.1 * minutes
    out.append((end, stop))
    return out


def test_haversine_known_distance() -> None:
    """One degree of latitude is about 111.2 km."""
    assert haversine_km(Position(0.0, 0.0), Position(1.0, 0.0)) == pytest.approx(111.195, abs=0.01)


def test_single_trip_with_gps_distance_speed_and_energy() -> None:
    """Ignition on starts a trip; ignition off for the dwell ends it where the vehicle stopped."""
    rows = _rows(*_drive(0, 10), (60 * 10 + 600, {"ignition": False, "speed": 0.0}))
    report = derive_trips(rows)
    assert len(report.trips) == 1
    trip = report.trips[0]
    assert (trip.start, trip.end, trip.duration_s) == (T0, T0 + 600, 600)
    assert trip.distance_source == "gps"
    assert trip.distance_km == pytest.approx(haversine_km(Position(19.40, -99.1), Position(19.50, -99.1)), abs=1e-3)
    assert trip.max_speed_kmh == 69.0
    assert trip.energy_used_pct == 10.0
    assert trip.end_position == Position(19.50, -99.1)
    assert not trip.ongoing
    assert report.stops == []


def test_odometer_preferred_over_gps() -> None:
    """With odometer readings at both ends the distance is their difference."""
    rows = _rows(*_drive(0, 5, odo0=1000.0), (900, {"ignition": False}))
    trip = derive_trips(rows).trips[0]
    assert trip.distance_source == "odometer"
    assert trip.distance_km == pytest.approx(5.5)


def test_short_pause_does_not_split_but_long_one_does() -> None:
    """A pause shorter than the dwell stays inside the trip; a longer one makes two trips and a stop."""
    first = _drive(0, 5)
    resume = _drive(300 + 60, 5, lat0=19.46)  # one minute at a light, then on
    later = _drive(300 + 60 + 300 + 3600, 5, lat0=19.60)  # an hour parked
    rows = _rows(*first, *resume, *later, (20_000, {"ignition": False}))
    report = derive_trips(rows, TripSettings(dwell_s=180))
    assert [(t.start - T0, t.end - T0) for t in report.trips] == [(0, 660), (4260, 4560)]
    assert len(report.stops) == 1
    stop = report.stops[0]
    assert (stop.start - T0, stop.end - T0, stop.duration_s) == (660, 4260, 3600)
    assert stop.position == report.trips[0].end_position


def test_speed_alone_without_ignition() -> None:
    """Bikes without ignition: speed above the threshold is movement, a crawl is not."""
    rows = _rows(
        (0, {"speed": 1.0}),
        (60, {"speed": 15.0}),
        (120, {"speed": 18.0}),
        (180, {"speed": 2.0}),
        (600, {"speed": 0.0}),
    )
    report = derive_trips(rows, TripSettings(speed_threshold_kmh=3.0, dwell_s=120))
    assert [(t.start - T0, t.end - T0, t.max_speed_kmh) for t in report.trips] == [(60, 180, 18.0)]
    assert report.trips[0].distance_km is None
    assert report.trips[0].energy_used_pct is None


def test_silence_after_parking_ends_the_trip() -> None:
    """A tracker that goes quiet at ignition off still closes the trip when it reports again."""
    rows = _rows(*_drive(0, 3), (7200, {"ignition": True, "speed": 0.0}), (7260, {"ignition": False}))
    report = derive_trips(rows, TripSettings(dwell_s=300))
    assert [(t.start - T0, t.end - T0) for t in report.trips] == [(0, 180), (7200, 7260)]
    assert not report.trips[0].ongoing
    assert report.trips[1].ongoing


def test_trip_still_running_when_data_ends_is_ongoing() -> None:
    """Data that ends mid-trip gives an ongoing trip ending at the last row."""
    rows = _rows((0, {"ignition": True, "speed": 30.0}), (60, {"speed": 40.0}))
    trip = derive_trips(rows).trips[0]
    assert trip.ongoing
    assert trip.end == T0 + 60
    assert trip.max_speed_kmh == 40.0


def test_partial_rows_and_projected_fields() -> None:
    """Fields carry forward between rows, and dotted (projected) keys read like nested ones."""
    rows = _rows(
        (0, {"soc": 50.0, "gps.lat": 10.0, "gps.lon": 10.0}),
        (10, {"ignition": True}),
        (20, {"gps.lat": 10.01, "gps.lon": 10.0}),
        (30, {"ignition": False}),
        (30 + 400, {"soc": 49.0}),
    )
    trip = derive_trips(rows).trips[0]
    assert (trip.start - T0, trip.end - T0) == (10, 30)
    assert trip.distance_km == pytest.approx(1.112, abs=1e-3)
    assert trip.energy_used_pct == 0.0


def test_no_rows_no_trips() -> None:
    """An empty or idle history has no trips and no stops."""
    assert derive_trips([]).trips == []
    idle = derive_trips(_rows((0, {"ignition": False, "speed": 0})))
    assert idle.trips == []
    assert idle.stops == []
