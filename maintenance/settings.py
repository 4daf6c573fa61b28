"""Settings of odometer and engine-hours derivation and of maintenance schedules ([maintenance])."""

from __future__ import annotations

from typing import Annotated

import msgspec
from msgspec import Meta


class MaintenanceSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    # Schedules, due alerts, service records and the /api/v1/maintenance routes.
    enabled: bool = True
    # Derive odometer and engine hours from each vehicle's telemetry into reported `meters`.
    meters_enabled: bool = True
    # The vehicle's own readings, preferred when a message carries them (dotted paths in its telemetry).
    odometer_field: Annotated[str, Meta(min_length=1)] = "odometer_km"
    engine_hours_field: Annotated[str, Meta(min_length=1)] = "engine_hours"
    # What the GPS and engine-time derivation reads.
    lat_field: Annotated[str, Meta(min_length=1)] = "gps.lat"
    lon_field: Annotated[str, Meta(min_length=1)] = "gps.lon"
    speed_field: Annotated[str, Meta(min_length=1)] = "speed"
    ignition_field: Annotated[str, Meta(min_length=1)] = "ignition"
    # Faster than this (km/h) counts as moving when a vehicle reports no ignition.
    moving_kmh: Annotated[float, Meta(ge=0)] = 3.0
    # Parked (ignition off and slower than moving_kmh, or neither reported): GPS must wander this far
    # from where the vehicle stopped before the distance counts; smaller wobbles are jitter.
    jitter_m: Annotated[float, Meta(ge=0)] = 25.0
    # A step implying more than this speed (km/h) is a jump (a bad fix, or a tow during an offline gap):
    # the hub does not count it and carries on from the new position.
    max_speed_kmh: Annotated[float, Meta(gt=0)] = 250.0
    # Engine time between two messages counts at most this long: a longer silence is not all engine time.
    max_gap_s: Annotated[float, Meta(gt=0)] = 300.0
    # A value is added to telemetry (twin and history) once it moved this much since it was last added.
    odometer_step_km: Annotated[float, Meta(ge=0)] = 0.1
    engine_hours_step: Annotated[float, Meta(ge=0)] = 0.01
    # Seconds between due/overdue checks of every vehicle and schedule.
    check_interval_s: Annotated[float, Meta(gt=0)] = 60.0
    # Schedules kept at most; vehicles per schedule are bounded by the fleet.
    max_schedules: Annotated[int, Meta(ge=1)] = 1000
