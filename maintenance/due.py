"""Where a vehicle stands against a schedule: a pure function of the interval, the meters and the time."""

from __future__ import annotations

from maintenance.model import Due, Interval, Schedule, Stage

_DAY_S = 86_400.0


def evaluate(
    schedule: Schedule, interval: Interval, odometer_km: float | None, engine_hours: float | None, now: float
) -> Due:
    """The next due point by each measure the schedule uses, and the worst stage of them ("first of several")."""
    b = schedule.body
    soon_km, soon_hours, soon_days = schedule.due_soon_margin()
    due = Due(
        schedule_id=schedule.id,
        vehicle_id=interval.vehicle_id,
        fleet=interval.fleet,
        status=Stage.OK,
        interval_started_at=interval.started_at,
        odometer_km=odometer_km,
        engine_hours=engine_hours,
    )
    stages = [Stage.OK]
    if b.every_km is not None and interval.start_odometer_km is not None:
        due.next_due_km = interval.start_odometer_km + b.every_km
        if odometer_km is not None:
            left = due.next_due_km - odometer_km
            due.remaining_km = round(left, 3)
            stages.append(_stage(left, soon_km or 0.0))
    if b.every_engine_hours is not None and interval.start_engine_hours is not None:
        due.next_due_engine_hours = interval.start_engine_hours + b.every_engine_hours
        if engine_hours is not None:
            left = due.next_due_engine_hours - engine_hours
            due.remaining_engine_hours = round(left, 4)
            stages.append(_stage(left, soon_hours or 0.0))
    if b.every_days is not None:
        due.next_due_at = interval.started_at + b.every_days * _DAY_S
        left = (due.next_due_at - now) / _DAY_S
        due.remaining_days = round(left, 4)
        stages.append(_stage(left, soon_days or 0.0))
    due.status = max(stages, key=lambda s: s.rank)
    return due


def _stage(remaining: float, margin: float) -> Stage:
    if remaining <= 0:
        return Stage.OVERDUE
    if remaining <= margin:
        return Stage.DUE_SOON
    return Stage.OK
