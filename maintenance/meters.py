"""Odometer and engine hours, derived by the hub from each vehicle's telemetry.

A `MeterDeriver` is a `twin.TelemetryEnricher`: the ingest consumer hands it every
telemetry message before merging it, and it adds `meters.odometer_km` and
`meters.engine_hours` when they changed, so both land in the twin's reported document
and in the same history row as the message, like any reported value.

- A vehicle's own reading (`odometer_km`, `engine_hours` by default) wins whenever a
  message carries one; the hub's value is then the reading plus the operator's offset.
- Otherwise distance is the great-circle length between consecutive fixes, except
  while parked (ignition off and slow, or neither reported), where a fix must wander
  `jitter_m` from where the vehicle stopped before it counts; and a step implying more
  than `max_speed_kmh` is a jump (bad fix, tow during an offline gap): skipped.
- Engine time accrues between consecutive messages while the ignition was on (or,
  without an ignition signal, while moving), at most `max_gap_s` per step.
- Messages older than the newest one seen are history backfill: nothing is derived.
- A value is added to a message when it moved `odometer_step_km` or `engine_hours_step`
  since it was last added (and always after a correction): full precision is kept inside,
  the twin lags it by less than one step, and most messages carry nothing extra.

State per vehicle is rebuilt from the twin (`meters.*`, the last fix) the first time a
vehicle is seen after a restart, so the values carry on across restarts.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from maintenance.settings import MaintenanceSettings
from twin import PATH_SEP, Json, TwinState

_EARTH_RADIUS_M = 6_371_008.8

ODOMETER = "odometer_km"
ENGINE_HOURS = "engine_hours"
ODOMETER_OFFSET = "odometer_offset_km"
ENGINE_HOURS_OFFSET = "engine_hours_offset"
METERS = "meters"


def distance_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    phi1, phi2 = math.radians(lat1), math.radians(lat2)
    dphi, dlmb = phi2 - phi1, math.radians(lon2 - lon1)
    h = math.sin(dphi / 2) ** 2 + math.cos(phi1) * math.cos(phi2) * math.sin(dlmb / 2) ** 2
    return 2 * _EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(h)))


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


_M_PER_DEG = math.pi / 180 * _EARTH_RADIUS_M


def fast_distance_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Metres between two fixes: the equirectangular approximation for steps under 10 km (off by
    less than a millimetre there), great-circle beyond."""
    dy = lat2 - lat1
    dx = (lon2 - lon1) * math.cos(math.radians((lat1 + lat2) * 0.5))
    metres = math.sqrt(dx * dx + dy * dy) * _M_PER_DEG
    return metres if metres < 10_000 else distance_m(lat1, lon1, lat2, lon2)


def _getter(path: tuple[str, ...]) -> Callable[[Mapping[str, Json]], object]:
    """A lookup of `path` in a message, specialised for one and two levels (the usual cases)."""
    if len(path) == 1:
        (key,) = path
        return lambda data: data.get(key)
    if len(path) == 2:
        outer, inner = path

        def two(data: Mapping[str, Json]) -> object:
            node = data.get(outer)
            return node.get(inner) if type(node) is dict else None

        return two
    return lambda data: _get(data, path)


def _get(data: Mapping[str, Json], path: tuple[str, ...]) -> object:
    node: object = data
    for key in path:
        if not isinstance(node, dict):
            return None
        node = node.get(key)
    return node


@dataclass(slots=True)
class Meter:
    """What the deriver knows of one vehicle."""

    odometer_km: float = 0.0
    engine_hours: float = 0.0
    odometer_offset_km: float = 0.0
    engine_hours_offset: float = 0.0
    # Device time of the newest message taken into account.
    ts: float | None = None
    # Where distance is measured from: the last counted fix (or where a parked vehicle stopped).
    lat: float | None = None
    lon: float | None = None
    ignition: bool | None = None
    speed_kmh: float | None = None
    last_odometer_reading: float | None = None
    last_hours_reading: float | None = None
    # What was last added to a message, to add only changes.
    sent_odometer: float | None = None
    sent_hours: float | None = None
    # A correction was applied: the next message carries every value and the offsets.
    corrected: bool = False
    # Steps skipped as jumps, for tests and the metric.
    jumps: int = 0


class MeterDeriver:
    """See the module docstring; register with `TwinService.enrichers`."""

    def __init__(self, settings: MaintenanceSettings | None = None) -> None:
        self.settings = s = settings or MaintenanceSettings()
        self._odometer_path = tuple(s.odometer_field.split("."))
        self._hours_path = tuple(s.engine_hours_field.split("."))
        self._lat_path = tuple(s.lat_field.split("."))
        self._lon_path = tuple(s.lon_field.split("."))
        self._speed_path = tuple(s.speed_field.split("."))
        self._ignition_path = tuple(s.ignition_field.split("."))
        self._odometer_of = _getter(self._odometer_path)
        self._hours_of = _getter(self._hours_path)
        self._lat_of = _getter(self._lat_path)
        self._lon_of = _getter(self._lon_path)
        self._speed_of = _getter(self._speed_path)
        self._ignition_of = _getter(self._ignition_path)
        self._meters: dict[str, Meter] = {}
        # Corrections waiting for the vehicle's next message: (odometer_km, engine_hours).
        self._pending: dict[str, tuple[float | None, float | None]] = {}

    def meter(self, vehicle_id: str) -> Meter | None:
        return self._meters.get(vehicle_id)

    def values(self, vehicle_id: str) -> tuple[float | None, float | None]:
        """The current (odometer_km, engine_hours), with a correction not yet applied taken into account."""
        pending = self._pending.get(vehicle_id)
        meter = self._meters.get(vehicle_id)
        odo = meter.odometer_km if meter else None
        hours = meter.engine_hours if meter else None
        if pending is not None:
            odo = pending[0] if pending[0] is not None else odo
            hours = pending[1] if pending[1] is not None else hours
        return odo, hours

    def correct(self, vehicle_id: str, odometer_km: float | None, engine_hours: float | None) -> None:
        """Set either value from the vehicle's next message on (the twin shows it with that message)."""
        old = self._pending.get(vehicle_id, (None, None))
        self._pending[vehicle_id] = (
            odometer_km if odometer_km is not None else old[0],
            engine_hours if engine_hours is not None else old[1],
        )

    def forget(self, vehicle_id: str) -> None:
        self._meters.pop(vehicle_id, None)
        self._pending.pop(vehicle_id, None)

    def forget_all(self, vehicle: Callable[[str], bool]) -> None:
        """Forget the vehicles `vehicle` selects: a hub worker's partition moved, and whoever owns
        it next rebuilds each from its twin, which the previous owner's writes keep current."""
        for vid in [v for v in self._meters if vehicle(v)]:
            del self._meters[vid]
        for vid in [v for v in self._pending if vehicle(v)]:
            del self._pending[vid]

    # -- the enricher ---------------------------------------------------------------------

    def enrich(self, state: TwinState, ts: float, data: dict[str, Json]) -> dict[str, Json] | None:
        vid = state.vehicle_id
        meter = self._meters.get(vid)
        if meter is None:
            meter = self._meters[vid] = self._from_twin(state)
        pending = self._pending.pop(vid, None)
        if pending is not None:
            self._apply_correction(meter, *pending)
        if meter.ts is None or ts > meter.ts:
            self._step(meter, ts, data)
        return self._changes(meter)

    def _from_twin(self, state: TwinState) -> Meter:
        reported = state.reported

        def value(*path: str) -> float | None:
            entry = reported.get(PATH_SEP.join(path))
            return None if entry is None else _number(entry.value)

        meter = Meter()
        odo, hours = value(METERS, ODOMETER), value(METERS, ENGINE_HOURS)
        meter.odometer_km = odo if odo is not None else 0.0
        meter.engine_hours = hours if hours is not None else 0.0
        meter.odometer_offset_km = value(METERS, ODOMETER_OFFSET) or 0.0
        meter.engine_hours_offset = value(METERS, ENGINE_HOURS_OFFSET) or 0.0
        meter.sent_odometer, meter.sent_hours = odo, hours
        meter.last_odometer_reading = value(*self._odometer_path)
        meter.last_hours_reading = value(*self._hours_path)
        if odo is None and meter.last_odometer_reading is not None:
            meter.odometer_km = meter.last_odometer_reading
        if hours is None and meter.last_hours_reading is not None:
            meter.engine_hours = meter.last_hours_reading
        lat_entry = reported.get(PATH_SEP.join(self._lat_path))
        lon_entry = reported.get(PATH_SEP.join(self._lon_path))
        if lat_entry is not None and lon_entry is not None:
            lat, lon = _number(lat_entry.value), _number(lon_entry.value)
            if lat is not None and lon is not None:
                meter.lat, meter.lon = lat, lon
                meter.ts = max(lat_entry.ts, lon_entry.ts)
        ignition = reported.get(PATH_SEP.join(self._ignition_path))
        if ignition is not None and isinstance(ignition.value, bool):
            meter.ignition = ignition.value
        meter.speed_kmh = value(*self._speed_path)
        return meter

    @staticmethod
    def _apply_correction(meter: Meter, odometer_km: float | None, engine_hours: float | None) -> None:
        if odometer_km is not None:
            if meter.last_odometer_reading is not None:
                meter.odometer_offset_km = odometer_km - meter.last_odometer_reading
            meter.odometer_km = odometer_km
        if engine_hours is not None:
            if meter.last_hours_reading is not None:
                meter.engine_hours_offset = engine_hours - meter.last_hours_reading
            meter.engine_hours = engine_hours
        meter.corrected = True

    def _engine_on(self, meter: Meter) -> bool:
        if meter.ignition is not None:
            return meter.ignition
        return meter.speed_kmh is not None and meter.speed_kmh > self.settings.moving_kmh

    def _step(self, meter: Meter, ts: float, data: Mapping[str, Json]) -> None:
        # The hot path of every telemetry message: lookups and arithmetic inlined on purpose.
        s = self.settings
        dt = ts - meter.ts if meter.ts is not None else None
        was_on = self._engine_on(meter)
        ignition = self._ignition_of(data)
        if ignition is True or ignition is False:
            meter.ignition = ignition
        speed = self._speed_of(data)
        if type(speed) is float or type(speed) is int:
            meter.speed_kmh = float(speed)
        on = self._engine_on(meter)

        hours_reading = _number(self._hours_of(data))
        if hours_reading is not None:
            meter.last_hours_reading = hours_reading
            meter.engine_hours = hours_reading + meter.engine_hours_offset
        elif dt is not None and was_on:
            meter.engine_hours += min(dt, s.max_gap_s) / 3600.0

        counted_m = 0.0
        lat, lon = self._lat_of(data), self._lon_of(data)
        valid = (type(lat) is float or type(lat) is int) and (type(lon) is float or type(lon) is int)
        if valid and -90 <= lat <= 90 and -180 <= lon <= 180:  # type: ignore[operator]
            if meter.lat is None or meter.lon is None:
                meter.lat, meter.lon = float(lat), float(lon)  # type: ignore[arg-type]
            else:
                step = fast_distance_m(meter.lat, meter.lon, lat, lon)  # type: ignore[arg-type]
                if dt is not None and dt > 0 and step / dt * 3.6 > s.max_speed_kmh:
                    meter.jumps += 1
                    meter.lat, meter.lon = float(lat), float(lon)  # type: ignore[arg-type]
                elif was_on or on or step > s.jitter_m:
                    counted_m = step
                    meter.lat, meter.lon = float(lat), float(lon)  # type: ignore[arg-type]
        odometer_reading = _number(self._odometer_of(data))
        if odometer_reading is not None:
            meter.last_odometer_reading = odometer_reading
            meter.odometer_km = odometer_reading + meter.odometer_offset_km
        else:
            meter.odometer_km += counted_m / 1000.0
        meter.ts = ts

    def _changes(self, meter: Meter) -> dict[str, Json] | None:
        out: dict[str, Json] = {}
        odo_step, hours_step = self.settings.odometer_step_km, self.settings.engine_hours_step
        sent_odo, sent_hours = meter.sent_odometer, meter.sent_hours
        if sent_odo is None or abs(meter.odometer_km - sent_odo) >= odo_step:
            out[ODOMETER] = meter.sent_odometer = round(meter.odometer_km, 3)
        if sent_hours is None or abs(meter.engine_hours - sent_hours) >= hours_step:
            out[ENGINE_HOURS] = meter.sent_hours = round(meter.engine_hours, 4)
        if meter.corrected:
            meter.corrected = False
            out[ODOMETER] = meter.sent_odometer = round(meter.odometer_km, 3)
            out[ENGINE_HOURS] = meter.sent_hours = round(meter.engine_hours, 4)
            out[ODOMETER_OFFSET] = round(meter.odometer_offset_km, 3)
            out[ENGINE_HOURS_OFFSET] = round(meter.engine_hours_offset, 4)
        return {METERS: out} if out else None
