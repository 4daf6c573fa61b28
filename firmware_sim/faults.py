"""Faults a simulated vehicle can develop, so the hub's rules have something real to alert on.

Every vehicle reports a battery temperature and front-left tyre pressure around normal
values. From a fault's start on, telemetry drifts the way the fault would make it:

- `overheat`: the battery warms by 2 C per report.
- `tyre_leak`: the front-left tyre loses 3 kPa per report.
- `silent`: the tracker stops reporting (the connection stays up).
- `leave_zone`: the vehicle is reported 50 km north-east of where it is.

Pure: randomness comes from the `random.Random` given, time from `now`.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Iterable
from typing import Any

import msgspec

NORMAL_TEMP_C = (24.0, 34.0)
NORMAL_KPA = (225.0, 240.0)
OVERHEAT_C_PER_REPORT = 2.0
LEAK_KPA_PER_REPORT = 3.0
MIN_KPA = 60.0
MAX_TEMP_C = 95.0
AWAY_DEGREES = 0.35
# A randomly chosen fault starts this many seconds after the fleet does.
RANDOM_START_S = (10.0, 60.0)


class FaultKind(enum.Enum):
    OVERHEAT = "overheat"
    TYRE_LEAK = "tyre_leak"
    SILENT = "silent"
    LEAVE_ZONE = "leave_zone"


class Fault(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One fault of one vehicle, starting `after_s` seconds after the fleet starts."""

    vehicle_id: str
    kind: FaultKind
    after_s: float = 0.0


class FaultInjector:
    """The sensors and faults of one vehicle: adds its readings to telemetry and applies its faults."""

    def __init__(self, rng: random.Random, start: float, faults: Iterable[Fault] = ()) -> None:
        self._starts = {fault.kind: start + fault.after_s for fault in faults}
        self.temp_c = rng.uniform(*NORMAL_TEMP_C)
        self.kpa = rng.uniform(*NORMAL_KPA)

    @classmethod
    def for_vehicle(
        cls, vehicle_id: str, rng: random.Random, start: float, faults: Iterable[Fault], rate: float
    ) -> FaultInjector:
        """The listed faults of `vehicle_id`, plus a random one with probability `rate`."""
        mine = [fault for fault in faults if fault.vehicle_id == vehicle_id]
        if rate > 0 and rng.random() < rate:
            kind = rng.choice(list(FaultKind))
            mine.append(Fault(vehicle_id, kind, rng.uniform(*RANDOM_START_S)))
        return cls(rng, start, mine)

    @property
    def kinds(self) -> set[FaultKind]:
        return set(self._starts)

    def active(self, kind: FaultKind, now: float) -> bool:
        start = self._starts.get(kind)
        return start is not None and now >= start

    def silent(self, now: float) -> bool:
        """Whether the tracker has stopped reporting."""
        return self.active(FaultKind.SILENT, now)

    def apply(self, telemetry: dict[str, Any], now: float) -> dict[str, Any]:
        """Add this vehicle's readings to one telemetry message, with its active faults."""
        if self.active(FaultKind.OVERHEAT, now):
            self.temp_c = min(MAX_TEMP_C, self.temp_c + OVERHEAT_C_PER_REPORT)
        if self.active(FaultKind.TYRE_LEAK, now):
            self.kpa = max(MIN_KPA, self.kpa - LEAK_KPA_PER_REPORT)
        telemetry["battery"] = {"temp_c": round(self.temp_c, 1)}
        telemetry["tyres"] = {"front_left": {"kpa": round(self.kpa, 1)}}
        gps = telemetry.get("gps")
        if self.active(FaultKind.LEAVE_ZONE, now) and isinstance(gps, dict):
            gps["lat"] = round(min(89.0, gps["lat"] + AWAY_DEGREES), 6)
            gps["lon"] = round(min(179.0, gps["lon"] + AWAY_DEGREES), 6)
        return telemetry
