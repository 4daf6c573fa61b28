"""Settings of fleet reports ([reports])."""

from __future__ import annotations

import msgspec


class ReportSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    # Reports, report schedules and the /api/v1/reports routes.
    enabled: bool = True
    # History rows read from the store per page while a report is built.
    rows_per_read: int = 5000
    # A report covers at most this many days (a weekly report is 7).
    max_days: int = 31
    # Faster than this (km/h) is driving; slower with the ignition on is idling.
    moving_kmh: float = 3.0
    # A gap between two messages counts towards driving or idling time at most this long.
    max_gap_s: float = 300.0
    # Stopped at least this long ends a trip (the stops report lists these stops).
    stop_min_s: float = 180.0
    # Scheduled reports are checked this often.
    schedule_check_s: float = 60.0
    max_schedules: int = 1000
    # Alerts counted per report at most (alert counts per vehicle come from this many).
    max_alerts: int = 100_000


def validate_reports(s: ReportSettings) -> list[tuple[str, str, object]]:
    problems: list[tuple[str, str, object]] = []
    for name in ("rows_per_read", "max_days", "max_schedules", "max_alerts"):
        if getattr(s, name) < 1:
            problems.append((f"reports.{name}", "at least 1", getattr(s, name)))
    for name in ("max_gap_s", "schedule_check_s"):
        if not getattr(s, name) > 0:
            problems.append((f"reports.{name}", "positive", getattr(s, name)))
    for name in ("moving_kmh", "stop_min_s"):
        if getattr(s, name) < 0:
            problems.append((f"reports.{name}", "0 or more", getattr(s, name)))
    return problems
