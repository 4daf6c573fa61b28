"""Reports as pure folds over one vehicle's history rows in device-time order.

Rows may carry any subset of fields, full (`{"gps": {"lat": ..}}`) or projected
(`{"gps.lat": ..}`); each field keeps its last reported value between rows. Time between
two rows is credited to what the vehicle was doing at the first of them (driving when
faster than `moving_kmh`, idling when the ignition was on and it was slower), at most
`max_gap_s` per gap: a silent tracker is not driving all night.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

from maintenance import fast_distance_m
from reports.model import FleetDay, VehicleDay, VisitRow
from rules import Zone, contains
from twin import Json

# What the folds read: pass as `fields` to a history query to fetch nothing else.
REPORT_FIELDS = (
    "speed",
    "ignition",
    "charging",
    "gps.lat",
    "gps.lon",
    "meters.odometer_km",
    "odometer_km",
    "soc",
    "fuel_l",
)


def field(data: Mapping[str, Json], name: str) -> Json:
    if name in data:
        return data[name]
    node: Json = data
    for key in name.split("."):
        if not isinstance(node, dict):
            return None
        node = node.get(key)
    return node


def _getter(name: str) -> Callable[[Mapping[str, Json]], Json]:
    """`field` for one name, with its path split once (the folds call these for every row)."""
    if "." not in name:
        return lambda data: data.get(name)
    outer, inner = name.split(".", 1)

    def get(data: Mapping[str, Json]) -> Json:
        if name in data:
            return data[name]
        node = data.get(outer)
        return field(node, inner) if isinstance(node, dict) else None

    return get


_IGNITION, _CHARGING, _SPEED = _getter("ignition"), _getter("charging"), _getter("speed")
_LAT, _LON, _SOC, _FUEL = _getter("gps.lat"), _getter("gps.lon"), _getter("soc"), _getter("fuel_l")
_ODOMETERS = (("odometer", _getter("meters.odometer_km")), ("vehicle_odometer", _getter("odometer_km")))


def number(value: Json) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


class DayFold:
    """A `VehicleDay` built row by row."""

    def __init__(self, vehicle_id: str, fleet: str, date: str, *, moving_kmh: float, max_gap_s: float) -> None:
        self.day = VehicleDay(vehicle_id, fleet, date)
        self.moving_kmh, self.max_gap_s = moving_kmh, max_gap_s
        self._ts: float | None = None
        self._speed: float | None = None
        self._ignition: bool | None = None
        self._charging = False
        self._lat: float | None = None
        self._lon: float | None = None
        self._soc: float | None = None
        self._fuel: float | None = None
        self._odo_first: dict[str, float] = {}
        self._odo_last: dict[str, float] = {}
        self._gps_km = 0.0
        self._speed_time = 0.0
        self._energy = 0.0
        self._fuel_used = 0.0

    def _moving(self) -> bool:
        return self._speed is not None and self._speed > self.moving_kmh

    def feed(self, ts: float, data: Mapping[str, Json]) -> None:
        d = self.day
        d.samples += 1
        if d.first_ts is None:
            d.first_ts = ts
        if self._ts is not None and ts > self._ts:
            gap = min(ts - self._ts, self.max_gap_s)
            if self._moving():
                d.driving_s += gap
                self._speed_time += gap * (self._speed or 0.0)
            elif self._ignition:
                d.idle_s += gap
        self._ts = max(ts, self._ts or ts)
        d.last_ts = self._ts
        ignition, charging = _IGNITION(data), _CHARGING(data)
        if isinstance(ignition, bool):
            self._ignition = ignition
        if isinstance(charging, bool):
            self._charging = charging
        speed = number(_SPEED(data))
        if speed is not None:
            self._speed = speed
            d.max_speed_kmh = speed if d.max_speed_kmh is None else max(d.max_speed_kmh, speed)
        for source, get in _ODOMETERS:
            value = number(get(data))
            if value is not None:
                self._odo_first.setdefault(source, value)
                self._odo_last[source] = value
        lat, lon = number(_LAT(data)), number(_LON(data))
        if lat is not None and lon is not None:
            if self._lat is not None and self._lon is not None:
                self._gps_km += fast_distance_m(self._lat, self._lon, lat, lon) / 1000.0
            self._lat, self._lon = lat, lon
        soc = number(_SOC(data))
        if soc is not None:
            if self._soc is not None and soc < self._soc and not self._charging:
                self._energy += self._soc - soc
            self._soc = soc
        fuel = number(_FUEL(data))
        if fuel is not None:
            if self._fuel is not None and fuel < self._fuel:
                self._fuel_used += self._fuel - fuel
            self._fuel = fuel

    def finish(self, alerts: int = 0) -> VehicleDay:
        d = self.day
        # The vehicle's own reading is exact; the hub's meters are added in steps (maintenance.odometer_step_km).
        for source in ("vehicle_odometer", "odometer"):
            if source in self._odo_first:
                d.distance_km = round(max(0.0, self._odo_last[source] - self._odo_first[source]), 3)
                d.distance_source = source
                break
        else:
            if self._lat is not None:
                d.distance_km, d.distance_source = round(self._gps_km, 3), "gps"
        d.avg_speed_kmh = round(self._speed_time / d.driving_s, 2) if d.driving_s > 0 else None
        d.energy_used_pct = round(self._energy, 3) if self._soc is not None else None
        d.fuel_used_l = round(self._fuel_used, 3) if self._fuel is not None else None
        d.alerts = alerts
        return d


def fleet_day(fleet: str, date: str, days: list[VehicleDay]) -> FleetDay:
    """Totals over a fleet's vehicles: sums, the top speed, and the driving-time-weighted mean speed."""
    out = FleetDay(fleet, date, vehicles=len(days))
    weighted = 0.0
    for d in days:
        out.distance_km += d.distance_km
        out.driving_s += d.driving_s
        out.idle_s += d.idle_s
        out.alerts += d.alerts
        if d.max_speed_kmh is not None:
            out.max_speed_kmh = (
                d.max_speed_kmh if out.max_speed_kmh is None else max(out.max_speed_kmh, d.max_speed_kmh)
            )
        if d.avg_speed_kmh is not None:
            weighted += d.avg_speed_kmh * d.driving_s
        if d.energy_used_pct is not None:
            out.energy_used_pct = (out.energy_used_pct or 0.0) + d.energy_used_pct
        if d.fuel_used_l is not None:
            out.fuel_used_l = (out.fuel_used_l or 0.0) + d.fuel_used_l
    out.distance_km = round(out.distance_km, 3)
    out.avg_speed_kmh = round(weighted / out.driving_s, 2) if out.driving_s > 0 else None
    if out.energy_used_pct is not None:
        out.energy_used_pct = round(out.energy_used_pct, 3)
    if out.fuel_used_l is not None:
        out.fuel_used_l = round(out.fuel_used_l, 3)
    return out


class VisitFold:
    """Zone visits of one vehicle: entered, left and dwell, from its positions in time order."""

    def __init__(self, vehicle_id: str, zones: Mapping[str, Zone], start: float, end: float) -> None:
        self.vehicle_id, self.zones, self.start, self.end = vehicle_id, zones, start, end
        self._inside: dict[str, float | None] = {}
        self._first = True
        self.visits: list[VisitRow] = []

    def feed(self, ts: float, data: Mapping[str, Json]) -> None:
        lat, lon = number(_LAT(data)), number(_LON(data))
        if lat is None or lon is None:
            return
        for name, zone in self.zones.items():
            inside = contains(zone, lat, lon)
            if inside and name not in self._inside:
                # Inside at the first position of the period: when it entered is before the report.
                self._inside[name] = None if self._first else ts
            elif not inside and name in self._inside:
                entered = self._inside.pop(name)
                self.visits.append(VisitRow(self.vehicle_id, name, entered, ts, ts - (entered or self.start)))
        self._first = False

    def finish(self) -> list[VisitRow]:
        for name, entered in sorted(self._inside.items()):
            self.visits.append(VisitRow(self.vehicle_id, name, entered, None, self.end - (entered or self.start)))
        self._inside.clear()
        return sorted(self.visits, key=lambda v: (v.entered or self.start, v.zone))
