"""One simulated electric vehicle: where it is, how it moves, its battery and its settings.

Pure and deterministic: all randomness comes from the `random.Random` it is given and
all time from the `now` values it is stepped with, so a seed and a sequence of clock
values reproduce a run exactly. It knows nothing of MQTT; see `firmware_sim.firmware`.
"""

from __future__ import annotations

import enum
import math
import random
from collections.abc import Mapping
from typing import Any

import msgspec

from firmware_sim import geo
from firmware_sim.cities import City
from firmware_sim.desired import DesiredResult, Settings, apply_desired

# Long gaps between steps (a slow loop, a reconnect) are simulated in slices this long,
# so a vehicle still follows its route, stops at lights and parks on the way.
MAX_SLICE_S = 5.0

CRUISE_KMH = (18.0, 55.0)
TRIP_KM = (1.5, 12.0)
PARK_S = (60.0, 900.0)
CHARGE_PARK_S = (1_200.0, 5_400.0)
# Red lights and junctions: how often a driving vehicle halts, and for how long.
STOPS_PER_KM = 1.0
STOP_S = (8.0, 45.0)
BATTERY_KWH = (40.0, 82.0)
CONSUMPTION_KWH_PER_KM = (0.13, 0.19)
CHARGER_KW = (7.4, 11.0, 22.0, 50.0)
CHARGE_CHANCE = 0.25
# Below this a driver looks for a charger at the next stop; below the minimum the car stays put.
LOW_SOC = 20.0
MIN_TRIP_SOC = 8.0
# Waypoints stay this fraction of the box away from its edges.
EDGE_MARGIN = 0.01


class Phase(enum.Enum):
    DRIVING = "driving"
    PARKED = "parked"


class Vehicle:
    """A vehicle that alternates between driving a route and parking (sometimes charging)."""

    def __init__(self, city: City, rng: random.Random, now: float, *, report_interval_s: float = 10.0) -> None:
        self.city = city
        self._rng = rng
        self._t = now
        self.settings = Settings(charge_limit=rng.choice((80, 90, 100)), report_interval_s=report_interval_s)
        self._capacity_kwh = rng.uniform(*BATTERY_KWH)
        self._kwh_per_km = rng.uniform(*CONSUMPTION_KWH_PER_KM)
        self._charger_kw = rng.choice(CHARGER_KW)

        lat_margin = (city.north - city.south) * EDGE_MARGIN
        lon_margin = (city.east - city.west) * EDGE_MARGIN
        self._south, self._north = city.south + lat_margin, city.north - lat_margin
        self._west, self._east = city.west + lon_margin, city.east - lon_margin

        self.lat = rng.uniform(self._south, self._north)
        self.lon = rng.uniform(self._west, self._east)
        self.soc = rng.uniform(35.0, 95.0)
        self.odometer_km = rng.uniform(2_000.0, 60_000.0)
        self.speed_kmh = 0.0
        self.heading_deg = rng.uniform(0.0, 360.0)
        self.charging = False
        self.ignition = False
        # Set by the `immobilize` command: the vehicle stays parked until released.
        self.immobilized = False
        self.seq = 0

        self.phase = Phase.PARKED
        self._park_until = now
        self._route: list[tuple[float, float]] = []
        self._cruise_kmh = 0.0
        self._stopped_until = now
        if rng.random() < 0.5:
            self._start_trip(now)
        else:
            self._park(now)
            # Spread the first departures instead of parking everyone for a full stay.
            self._park_until = now + rng.uniform(0.0, self._park_until - now)

    @property
    def report_interval_s(self) -> float:
        return self.settings.report_interval_s

    def step(self, now: float) -> None:
        """Advance the vehicle to `now`; a clock that goes backwards leaves it where it is."""
        total = now - self._t
        if total <= 0.0:
            return
        slices = math.ceil(total / MAX_SLICE_S)
        dt = total / slices
        for i in range(slices):
            self._advance(self._t + i * dt, dt)
        self._t = now

    def telemetry(self, now: float) -> dict[str, Any]:
        """What the vehicle reports now, as a JSON-able dict; each call takes the next `seq`."""
        self.seq += 1
        heading = round(self.heading_deg, 1)
        return {
            "ts": round(now, 3),
            "seq": self.seq,
            "gps": {"lat": round(self.lat, 6), "lon": round(self.lon, 6)},
            "speed": round(self.speed_kmh, 1),
            "heading": heading if heading < 360.0 else 0.0,
            "soc": round(self.soc, 1),
            "charging": self.charging,
            "odometer_km": round(self.odometer_km, 3),
            "ignition": self.ignition,
            "doors": {"locked": self.settings.doors_locked},
            "charge_limit": self.settings.charge_limit,
            "config": {"report_interval_s": _plain_number(self.settings.report_interval_s)},
        }

    def apply_desired(self, delta: Mapping[str, Any]) -> DesiredResult:
        """Take the desired values this vehicle understands; see `firmware_sim.desired`."""
        result = apply_desired(self.settings, delta)
        self.settings = result.settings
        if self.charging and self.soc >= self.settings.charge_limit:
            self.charging = False
        return result

    def set_locked(self, locked: bool) -> None:
        self.settings = msgspec.structs.replace(self.settings, doors_locked=locked)

    # -- movement ---------------------------------------------------------------------

    def _advance(self, t: float, dt: float) -> None:
        end = t + dt
        if self.phase is Phase.PARKED:
            self._charge(dt)
            if end >= self._park_until:
                self._start_trip(end)
            return

        moving_s = max(0.0, end - max(t, self._stopped_until))
        speed = self._cruise_kmh * self._rng.uniform(0.8, 1.15)
        travelled = self._drive(speed * moving_s / 3600.0)
        self.speed_kmh = travelled / dt * 3600.0
        self.odometer_km += travelled
        self.soc = max(0.0, self.soc - travelled * self._kwh_per_km / self._capacity_kwh * 100.0)
        if self._rng.random() < travelled * STOPS_PER_KM:
            self._stopped_until = end + self._rng.uniform(*STOP_S)
        if not self._route or self.soc <= 0.0:
            self._park(end)

    def _drive(self, km: float) -> float:
        """Move up to `km` along the route; return how far the vehicle actually went."""
        travelled = 0.0
        while km > travelled and self._route:
            lat, lon = self._route[0]
            leg = geo.distance_km(self.lat, self.lon, lat, lon)
            if leg > 0.0:
                self.heading_deg = geo.bearing_deg(self.lat, self.lon, lat, lon)
            left = km - travelled
            if leg <= left:
                self.lat, self.lon = lat, lon
                self._route.pop(0)
                travelled += leg
            else:
                frac = left / leg
                self.lat += (lat - self.lat) * frac
                self.lon += (lon - self.lon) * frac
                travelled = km
        return travelled

    def _charge(self, dt: float) -> None:
        if not self.charging:
            return
        self.soc += self._charger_kw * dt / 3600.0 / self._capacity_kwh * 100.0
        if self.soc >= self.settings.charge_limit:
            self.soc = min(self.soc, float(self.settings.charge_limit))
            self.charging = False

    def _park(self, t: float) -> None:
        self.phase = Phase.PARKED
        self.speed_kmh = 0.0
        self.ignition = False
        self._route = []
        wants_charge = self.soc < LOW_SOC or self._rng.random() < CHARGE_CHANCE
        self.charging = wants_charge and self.soc < self.settings.charge_limit
        self._park_until = t + self._rng.uniform(*(CHARGE_PARK_S if self.charging else PARK_S))

    def _start_trip(self, t: float) -> None:
        if self.immobilized:
            self._park_until = t + self._rng.uniform(*PARK_S)
            return
        if self.soc < MIN_TRIP_SOC:
            self.charging = self.soc < self.settings.charge_limit
            self._park_until = t + self._rng.uniform(*CHARGE_PARK_S)
            return
        self.phase = Phase.DRIVING
        self.ignition = True
        self.charging = False
        self.speed_kmh = 0.0
        self._cruise_kmh = self._rng.uniform(*CRUISE_KMH)
        self._stopped_until = t
        self._route = self._plan_route()

    def _plan_route(self) -> list[tuple[float, float]]:
        """A staircase of street-like legs from here to a destination a few km away."""
        rng = self._rng
        dest = (self.lat, self.lon)
        for _ in range(5):
            km = rng.uniform(*TRIP_KM)
            bearing = rng.uniform(0.0, 360.0)
            east, north = geo.offsets_from_bearing(km, bearing)
            dest = self._clamp(*geo.offset_point(self.lat, self.lon, east, north))
            if geo.distance_km(self.lat, self.lon, *dest) >= TRIP_KM[0] / 2:
                break
        legs = rng.randint(2, 4)
        route: list[tuple[float, float]] = []
        cur_lat, cur_lon = self.lat, self.lon
        for i in range(1, legs + 1):
            frac = i / legs
            lat = self.lat + (dest[0] - self.lat) * frac
            lon = self.lon + (dest[1] - self.lon) * frac
            if i < legs:
                jitter_east, jitter_north = rng.uniform(-0.4, 0.4), rng.uniform(-0.4, 0.4)
                lat, lon = self._clamp(*geo.offset_point(lat, lon, jitter_east, jitter_north))
            # Mostly a grid of streets, now and then an avenue that cuts across it.
            turn = rng.random()
            if turn < 0.4:
                route.append((cur_lat, lon))
            elif turn < 0.8:
                route.append((lat, cur_lon))
            route.append((lat, lon))
            cur_lat, cur_lon = lat, lon
        return route

    def _clamp(self, lat: float, lon: float) -> tuple[float, float]:
        return min(max(lat, self._south), self._north), min(max(lon, self._west), self._east)


def _plain_number(value: float) -> float | int:
    # 10.0 reported against a desired 10 would read as a mismatch to anything comparing JSON text.
    return int(value) if float(value).is_integer() else value
