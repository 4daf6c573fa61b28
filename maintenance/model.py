"""Maintenance schedules, the interval each vehicle is in, service records and meter corrections."""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Final

import msgspec

from twin import VehicleSelector

SCHEDULE_ID: Final = re.compile(r"[a-z0-9][a-z0-9_-]{0,39}")

ScheduleId = Annotated[str, msgspec.Meta(pattern=r"^[a-z0-9][a-z0-9_-]{0,39}$")]
Positive = Annotated[float, msgspec.Meta(gt=0, le=1e9)]
NonNegative = Annotated[float, msgspec.Meta(ge=0, le=1e9)]
Text = Annotated[str, msgspec.Meta(max_length=1024)]


@dataclass(frozen=True, slots=True)
class _Selected:
    vehicle_id: str
    fleet: str
    tags: Mapping[str, object]


class Stage(enum.Enum):
    """How far into its interval a vehicle is; an interval moves forward only, until a service resets it."""

    OK = "ok"
    DUE_SOON = "due_soon"
    OVERDUE = "overdue"

    @property
    def rank(self) -> int:
        return _RANK[self]


_RANK = {Stage.OK: 0, Stage.DUE_SOON: 1, Stage.OVERDUE: 2}


class ScheduleBody(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    """A schedule as written through the API: due every N km, N engine hours or N days, whichever comes first."""

    name: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
    every_km: Positive | None = None
    every_engine_hours: Positive | None = None
    every_days: Positive | None = None
    # How early "due soon" starts; unset: a tenth of the interval.
    due_soon_km: NonNegative | None = None
    due_soon_engine_hours: NonNegative | None = None
    due_soon_days: NonNegative | None = None
    # Which vehicles: those meeting every criterion given (fleet, tags, vehicle ids); none given: every vehicle.
    selector: VehicleSelector = msgspec.field(default_factory=VehicleSelector)
    severity_due_soon: str = "warning"
    severity_overdue: str = "major"
    description: Text | None = None

    def __post_init__(self) -> None:
        if self.every_km is None and self.every_engine_hours is None and self.every_days is None:
            raise ValueError("a schedule needs at least one of every_km, every_engine_hours, every_days")
        allowed = {"critical", "major", "minor", "warning", "info"}
        for severity in (self.severity_due_soon, self.severity_overdue):
            if severity not in allowed:
                raise ValueError(f"severity must be one of {', '.join(sorted(allowed))}, got {severity!r}")


class Schedule(msgspec.Struct, frozen=True, omit_defaults=True):
    id: str
    body: ScheduleBody
    created_at: float
    updated_at: float

    def selects(self, vehicle_id: str, fleet: str, tags: Mapping[str, object]) -> bool:
        return self.body.selector.admits(_Selected(vehicle_id, fleet, tags))

    def due_soon_margin(self) -> tuple[float | None, float | None, float | None]:
        b = self.body

        def margin(explicit: float | None, every: float | None) -> float | None:
            if every is None:
                return None
            return explicit if explicit is not None else every / 10

        return (
            margin(b.due_soon_km, b.every_km),
            margin(b.due_soon_engine_hours, b.every_engine_hours),
            margin(b.due_soon_days, b.every_days),
        )


class Interval(msgspec.Struct, omit_defaults=True):
    """Where a vehicle's current interval of one schedule began, and the stage already alerted in it."""

    schedule_id: str
    vehicle_id: str
    fleet: str
    started_at: float
    start_odometer_km: float | None = None
    start_engine_hours: float | None = None
    stage: Stage = Stage.OK
    # The service record that began it; None for the first interval (from when the schedule first saw the vehicle).
    service_id: str | None = None


class ServiceRecord(msgspec.Struct, frozen=True, omit_defaults=True):
    """A service done: closes the vehicle's interval of that schedule and starts the next from here."""

    id: str
    vehicle_id: str
    fleet: str
    schedule_id: str
    done_at: float
    recorded_at: float
    by: str
    odometer_km: float | None = None
    engine_hours: float | None = None
    note: str | None = None


class MeterCorrection(msgspec.Struct, frozen=True, omit_defaults=True):
    """An operator's correction of a vehicle's odometer or engine hours."""

    id: str
    vehicle_id: str
    fleet: str
    at: float
    by: str
    odometer_km: float | None = None
    engine_hours: float | None = None
    previous_odometer_km: float | None = None
    previous_engine_hours: float | None = None
    note: str | None = None


class Due(msgspec.Struct, omit_defaults=True):
    """One vehicle's standing against one schedule: its next due point and what is left."""

    schedule_id: str
    vehicle_id: str
    fleet: str
    status: Stage
    interval_started_at: float
    odometer_km: float | None = None
    engine_hours: float | None = None
    next_due_km: float | None = None
    next_due_engine_hours: float | None = None
    next_due_at: float | None = None
    remaining_km: float | None = None
    remaining_engine_hours: float | None = None
    remaining_days: float | None = None
