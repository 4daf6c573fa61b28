"""Settings of odometer and engine-hours derivation and of maintenance schedules ([maintenance])."""

from __future__ import annotations

from typing import Annotated

import msgspec
from msgspec import Meta

# A dotted path into a vehicle's telemetry.
Field = Annotated[str, Meta(min_length=1)]


class MaintenanceSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    enabled: Annotated[
        bool, Meta(description="Schedules, due alerts, service records and the /api/v1/maintenance routes.")
    ] = True
    meters_enabled: Annotated[
        bool, Meta(description="Derive odometer and engine hours from each vehicle's telemetry into reported `meters`.")
    ] = True
    odometer_field: Annotated[
        Field, Meta(description="The vehicle's own odometer reading (km), preferred when a message carries it.")
    ] = "odometer_km"
    engine_hours_field: Annotated[
        Field, Meta(description="The vehicle's own engine-hours reading, preferred when a message carries it.")
    ] = "engine_hours"
    lat_field: Annotated[Field, Meta(description="The latitude the GPS distance derivation reads.")] = "gps.lat"
    lon_field: Annotated[Field, Meta(description="The longitude the GPS distance derivation reads.")] = "gps.lon"
    speed_field: Annotated[Field, Meta(description="The speed (km/h) the derivation reads.")] = "speed"
    ignition_field: Annotated[Field, Meta(description="The ignition flag the engine-time derivation reads.")] = (
        "ignition"
    )
    moving_kmh: Annotated[
        float, Meta(ge=0, description="Faster than this (km/h) counts as moving when a vehicle reports no ignition.")
    ] = 3.0
    jitter_m: Annotated[
        float,
        Meta(
            ge=0,
            description="Parked (ignition off and slower than moving_kmh, or neither reported): GPS must wander this "
            "far from where the vehicle stopped before the distance counts; smaller wobbles are jitter.",
        ),
    ] = 25.0
    max_speed_kmh: Annotated[
        float,
        Meta(
            gt=0,
            description="A step implying more than this speed (km/h) is a jump (a bad fix, or a tow during an "
            "offline gap): the hub does not count it and carries on from the new position.",
        ),
    ] = 250.0
    max_gap_s: Annotated[
        float,
        Meta(
            gt=0,
            description="Engine time between two messages counts at most this long: a longer silence is not all "
            "engine time.",
        ),
    ] = 300.0
    odometer_step_km: Annotated[
        float,
        Meta(ge=0, description="The odometer is added to telemetry (twin and history) once it moved this much."),
    ] = 0.1
    engine_hours_step: Annotated[
        float,
        Meta(ge=0, description="Engine hours are added to telemetry (twin and history) once they moved this much."),
    ] = 0.01
    check_interval_s: Annotated[
        float, Meta(gt=0, description="Seconds between due/overdue checks of every vehicle and schedule.")
    ] = 60.0
    max_schedules: Annotated[
        int, Meta(ge=1, description="Schedules kept at most; vehicles per schedule are bounded by the fleet.")
    ] = 1000
