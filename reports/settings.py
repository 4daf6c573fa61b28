"""Settings of fleet reports ([reports])."""

from __future__ import annotations

from typing import Annotated

import msgspec
from msgspec import Meta


class ReportSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    # Reports, report schedules and the /api/v1/reports routes.
    enabled: bool = True
    # History rows read from the store per page while a report is built.
    rows_per_read: Annotated[int, Meta(ge=1)] = 5000
    # A report covers at most this many days (a weekly report is 7).
    max_days: Annotated[int, Meta(ge=1, le=366)] = 31
    # Faster than this (km/h) is driving; slower with the ignition on is idling.
    moving_kmh: Annotated[float, Meta(ge=0)] = 3.0
    # A gap between two messages counts towards driving or idling time at most this long.
    max_gap_s: Annotated[float, Meta(gt=0)] = 300.0
    # Stopped at least this long ends a trip (the stops report lists these stops).
    stop_min_s: Annotated[float, Meta(ge=0)] = 180.0
    # Scheduled reports are checked this often.
    schedule_check_s: Annotated[float, Meta(gt=0)] = 60.0
    max_schedules: Annotated[int, Meta(ge=1)] = 1000
    # Alerts counted per report at most (alert counts per vehicle come from this many).
    max_alerts: Annotated[int, Meta(ge=1)] = 100_000
