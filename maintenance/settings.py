"""Settings of odometer and engine-hours derivation and of maintenance schedules ([maintenance])."""

from __future__ import annotations

import msgspec


class MaintenanceSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    # Schedules, due alerts, service records and the /api/v1/maintenance routes.
    enabled: bool = True
    # Derive odometer and engine hours from each vehicle's telemetry into reported `meters`.
    meters_enabled: bool = True
    # The vehicle's own readings, preferred when a message carries them (dotted paths in its telemetry).
    odometer_field: str = "odometer_km"
    engine_hours_field: str = "engine_hours"
    # What the GPS and engine-time derivation reads.
    lat_field: str = "gps.lat"
    lon_field: str = "gps.lon"
    speed_field: str = "speed"
    ignition_field: str = "ignition"
    # Faster than this (km/h) counts as moving when a vehicle reports no ignition.
    moving_kmh: float = 3.0
    # Parked (ignition off and slower than moving_kmh, or neither reported): GPS must wander this far
    # from where the vehicle stopped before the distance counts; smaller wobbles are jitter.
    jitter_m: float = 25.0
    # A step implying more than this speed (km/h) is a jump (a bad fix, or a tow during an offline gap):
    # the hub does not count it and carries on from the new position.
    max_speed_kmh: float = 250.0
    # Engine time between two messages counts at most this long: a longer silence is not all engine time.
    max_gap_s: float = 300.0
    # Seconds between due/overdue checks of every vehicle and schedule.
    check_interval_s: float = 60.0
    # Schedules kept at most; vehicles per schedule are bounded by the fleet.
    max_schedules: int = 1000


def validate_maintenance(settings: MaintenanceSettings) -> list[tuple[str, str, object]]:
    """(setting, what it must be, value) for every setting out of range."""
    problems: list[tuple[str, str, object]] = []
    for name in ("moving_kmh", "jitter_m"):
        if getattr(settings, name) < 0:
            problems.append((f"maintenance.{name}", "0 or more", getattr(settings, name)))
    for name in ("max_speed_kmh", "max_gap_s", "check_interval_s"):
        if not getattr(settings, name) > 0:
            problems.append((f"maintenance.{name}", "positive", getattr(settings, name)))
    if settings.max_schedules < 1:
        problems.append(("maintenance.max_schedules", "at least 1", settings.max_schedules))
    for name in ("odometer_field", "engine_hours_field", "lat_field", "lon_field", "speed_field", "ignition_field"):
        if not getattr(settings, name):
            problems.append((f"maintenance.{name}", "a dotted path", getattr(settings, name)))
    return problems
