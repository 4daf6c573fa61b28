"""Settings of fleet reports ([reports])."""

from __future__ import annotations

from typing import Annotated

import msgspec
from msgspec import Meta


class ReportSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    enabled: Annotated[bool, Meta(description="Reports, report schedules and the /api/v1/reports routes.")] = True
    rows_per_read: Annotated[
        int, Meta(ge=1, description="History rows read from the store per page while a report is built.")
    ] = 5000
    max_days: Annotated[
        int, Meta(ge=1, le=366, description="A report covers at most this many days (a weekly report is 7).")
    ] = 31
    moving_kmh: Annotated[
        float, Meta(ge=0, description="Faster than this (km/h) is driving; slower with the ignition on is idling.")
    ] = 3.0
    max_gap_s: Annotated[
        float,
        Meta(gt=0, description="A gap between two messages counts towards driving or idling time at most this long."),
    ] = 300.0
    stop_min_s: Annotated[
        float,
        Meta(ge=0, description="Stopped at least this long ends a trip (the stops report lists these stops)."),
    ] = 180.0
    schedule_check_s: Annotated[float, Meta(gt=0, description="Scheduled reports are checked this often.")] = 60.0
    max_schedules: Annotated[int, Meta(ge=1, description="Report schedules kept at most.")] = 1000
    max_alerts: Annotated[
        int,
        Meta(ge=1, description="Alerts counted per report at most (alert counts per vehicle come from this many)."),
    ] = 100_000
