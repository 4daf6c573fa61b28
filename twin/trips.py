"""Trips and stops derived from a vehicle's history: a pure fold over rows in time order.

A vehicle is active while its ignition is on or its speed is above a threshold. A trip
starts at the first active row and ends where inactivity began, once the vehicle has
stayed inactive (or silent: trackers often stop reporting when parked) for the dwell
time. Rows may carry any subset of fields; each field keeps its last reported value.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import msgspec

from twin.model import HistoryRow, Json
from twin.paths import get_path

# What the fold reads; pass as `fields` to a history query to fetch nothing else.
TRIP_FIELDS = ("ignition", "speed", "gps.lat", "gps.lon", "odometer_km", "soc")

_EARTH_RADIUS_KM = 6371.0088


class TripSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    # Faster than this (km/h) counts as moving even without an ignition signal.
    speed_threshold_kmh: float = 3.0
    # Inactive (or silent) for this long ends a trip; shorter pauses (traffic lights) do not.
    dwell_s: float = 180.0


class Position(msgspec.Struct, frozen=True):
    lat: float
    lon: float


class Trip(msgspec.Struct):
    start: float
    end: float
    duration_s: float
    distance_km: float | None
    # "odometer" (odometer_km at both ends), "gps" (haversine between fixes) or None.
    distance_source: str | None
    max_speed_kmh: float | None
    # State of charge at the start minus at the end, percentage points; None without soc.
    energy_used_pct: float | None
    start_position: Position | None
    end_position: Position | None
    # The data ended before the trip was seen to end (still moving, or stopped for less than the dwell).
    ongoing: bool = False


class Stop(msgspec.Struct):
    start: float
    end: float
    duration_s: float
    position: Position | None


class TripReport(msgspec.Struct):
    trips: list[Trip]
    # The pauses between consecutive trips.
    stops: list[Stop]


def haversine_km(a: Position, b: Position) -> float:
    phi1, phi2 = math.radians(a.lat), math.radians(b.lat)
    dphi, dlmb = phi2 - phi1, math.radians(b.lon - a.lon)
    h = math.sin(dphi / 2) ** 2 + math.cos(phi1) * math.cos(phi2) * math.sin(dlmb / 2) ** 2
    return 2 * _EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(h)))


def _number(value: Json) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _field(data: Mapping[str, Json], name: str) -> tuple[bool, Json]:
    """A field from a full row ({"gps": {"lat": ..}}) or a projected one ({"gps.lat": ..})."""
    if name in data:
        return True, data[name]
    return get_path(data, tuple(name.split(".")))


class _Reading:
    """The last reported value of each field the fold uses."""

    def __init__(self) -> None:
        self.ignition: bool | None = None
        self.speed: float | None = None
        self.lat: float | None = None
        self.lon: float | None = None
        self.odometer: float | None = None
        self.soc: float | None = None

    def update(self, data: Mapping[str, Json]) -> bool:
        """Apply a row; returns whether it carried a new position."""
        found, value = _field(data, "ignition")
        if found and isinstance(value, bool):
            self.ignition = value
        for attr, name in (("speed", "speed"), ("odometer", "odometer_km"), ("soc", "soc")):
            found, value = _field(data, name)
            if found and _number(value) is not None:
                setattr(self, attr, _number(value))
        found_lat, lat = _field(data, "gps.lat")
        found_lon, lon = _field(data, "gps.lon")
        if found_lat and found_lon and _number(lat) is not None and _number(lon) is not None:
            self.lat, self.lon = _number(lat), _number(lon)
            return True
        return False

    @property
    def position(self) -> Position | None:
        return Position(self.lat, self.lon) if self.lat is not None and self.lon is not None else None

    def active(self, threshold: float) -> bool:
        return self.ignition is True or (self.speed is not None and self.speed > threshold)


class _Leg:
    """Totals over a stretch of rows, so a pause can be folded back in or thrown away."""

    def __init__(self, at: Position | None) -> None:
        self.distance = 0.0
        self.fixes = 1 if at is not None else 0
        self.max_speed: float | None = None

    def absorb(self, other: _Leg) -> None:
        self.distance += other.distance
        self.fixes += other.fixes
        if other.max_speed is not None:
            self.max_speed = other.max_speed if self.max_speed is None else max(self.max_speed, other.max_speed)


class _Open:
    def __init__(self, ts: float, reading: _Reading) -> None:
        self.start = ts
        self.start_position = reading.position
        self.start_soc = reading.soc
        self.start_odometer = reading.odometer
        self.leg = _Leg(reading.position)
        # Set while the vehicle is inactive: when it stopped, what it read then, the pause's own leg.
        self.stopped_at: float | None = None
        self.stop_reading: tuple[Position | None, float | None, float | None] = (None, None, None)
        self.pause = _Leg(None)


class TripDetector:
    """Feed rows in device-time order, then `finish()`; memory stays constant per trip."""

    def __init__(self, settings: TripSettings | None = None) -> None:
        self.settings = settings or TripSettings()
        self._reading = _Reading()
        self._trip: _Open | None = None
        self._last_position: Position | None = None
        self._last_ts: float | None = None
        self.trips: list[Trip] = []

    def feed(self, ts: float, data: Mapping[str, Json]) -> None:
        trip = self._trip
        if trip is not None and trip.stopped_at is not None and ts - trip.stopped_at >= self.settings.dwell_s:
            self._close(trip, ongoing=False)
            trip = None
        moved = self._reading.update(data)
        reading = self._reading
        active = reading.active(self.settings.speed_threshold_kmh)
        if trip is None:
            if active:
                self._trip = _Open(ts, reading)
        else:
            leg = trip.pause if trip.stopped_at is not None else trip.leg
            position = reading.position
            if moved and position is not None:
                if self._last_position is not None:
                    leg.distance += haversine_km(self._last_position, position)
                leg.fixes += 1
            if reading.speed is not None:
                leg.max_speed = reading.speed if leg.max_speed is None else max(leg.max_speed, reading.speed)
            if active and trip.stopped_at is not None:
                trip.leg.absorb(trip.pause)
                trip.stopped_at, trip.pause = None, _Leg(None)
            elif not active and trip.stopped_at is None:
                trip.stopped_at = ts
                trip.stop_reading = (position, reading.soc, reading.odometer)
        if reading.position is not None:
            self._last_position = reading.position
        self._last_ts = ts

    def _close(self, trip: _Open, *, ongoing: bool) -> None:
        if trip.stopped_at is not None:
            end = trip.stopped_at
            end_position, end_soc, end_odometer = trip.stop_reading
        else:
            end = self._last_ts if self._last_ts is not None else trip.start
            r = self._reading
            end_position, end_soc, end_odometer = r.position, r.soc, r.odometer
        distance: float | None = None
        source: str | None = None
        if trip.start_odometer is not None and end_odometer is not None and end_odometer >= trip.start_odometer:
            distance, source = round(end_odometer - trip.start_odometer, 3), "odometer"
        elif trip.leg.fixes >= 2:
            distance, source = round(trip.leg.distance, 3), "gps"
        energy = None
        if trip.start_soc is not None and end_soc is not None:
            energy = round(trip.start_soc - end_soc, 3)
        self.trips.append(
            Trip(
                start=trip.start,
                end=end,
                duration_s=end - trip.start,
                distance_km=distance,
                distance_source=source,
                max_speed_kmh=trip.leg.max_speed,
                energy_used_pct=energy,
                start_position=trip.start_position,
                end_position=end_position,
                ongoing=ongoing,
            )
        )
        self._trip = None

    def finish(self) -> TripReport:
        trip = self._trip
        if trip is not None:
            confirmed = (
                trip.stopped_at is not None
                and self._last_ts is not None
                and self._last_ts - trip.stopped_at >= self.settings.dwell_s
            )
            self._close(trip, ongoing=not confirmed)
        stops = [
            Stop(start=a.end, end=b.start, duration_s=b.start - a.end, position=a.end_position)
            for a, b in zip(self.trips, self.trips[1:], strict=False)
        ]
        return TripReport(trips=self.trips, stops=stops)


def derive_trips(rows: Iterable[HistoryRow], settings: TripSettings | None = None) -> TripReport:
    """Trips and stops of one vehicle's rows, which must be in device-time order."""
    detector = TripDetector(settings)
    for row in rows:
        detector.feed(row.ts, row.data)
    return detector.finish()
