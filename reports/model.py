"""What reports hold: a vehicle's day, a fleet's day, stops, zone visits, and report schedules."""

from __future__ import annotations

import enum
from typing import Annotated

import msgspec


class VehicleDay(msgspec.Struct, omit_defaults=True):
    """One vehicle over one report period (a local day)."""

    vehicle_id: str
    fleet: str
    date: str
    samples: int = 0
    distance_km: float = 0.0
    # "vehicle_odometer" (odometer_km), "odometer" (the hub's meters.odometer_km) or "gps".
    distance_source: str | None = None
    driving_s: float = 0.0
    idle_s: float = 0.0
    max_speed_kmh: float | None = None
    # Time-weighted mean speed while driving.
    avg_speed_kmh: float | None = None
    # Sum of drops of the state of charge while not charging, percentage points.
    energy_used_pct: float | None = None
    # Sum of drops of fuel_l, litres.
    fuel_used_l: float | None = None
    alerts: int = 0
    first_ts: float | None = None
    last_ts: float | None = None


class FleetDay(msgspec.Struct, omit_defaults=True):
    fleet: str
    date: str
    vehicles: int = 0
    distance_km: float = 0.0
    driving_s: float = 0.0
    idle_s: float = 0.0
    max_speed_kmh: float | None = None
    avg_speed_kmh: float | None = None
    energy_used_pct: float | None = None
    fuel_used_l: float | None = None
    alerts: int = 0


class StopRow(msgspec.Struct, omit_defaults=True):
    vehicle_id: str
    start: float
    end: float
    duration_s: float
    lat: float | None = None
    lon: float | None = None


class VisitRow(msgspec.Struct, omit_defaults=True):
    """A stay inside a zone: entered (None: inside when the period began), left (None: still inside)."""

    vehicle_id: str
    zone: str
    entered: float | None
    left: float | None
    dwell_s: float


class Period(enum.Enum):
    DAILY = "daily"
    WEEKLY = "weekly"


class ReportScheduleBody(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    """Send a fleet's summary for the last day (or ISO week) to a notification channel."""

    fleet: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    channel: Annotated[str, msgspec.Meta(pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$")]
    period: Period = Period.DAILY
    tz: Annotated[str, msgspec.Meta(max_length=64)] = "UTC"
    # Local hour after which the last period's report goes out.
    at_hour: Annotated[int, msgspec.Meta(ge=0, le=23)] = 6


class ReportSchedule(msgspec.Struct, frozen=True, omit_defaults=True):
    id: str
    body: ReportScheduleBody
    created_at: float
    updated_at: float
    # The last period sent ("2026-12-05", or the Monday of a week).
    last_period: str | None = None
