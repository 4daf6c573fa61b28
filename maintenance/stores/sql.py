"""What the SQLite and PostgreSQL maintenance stores share: columns and query building."""

from __future__ import annotations

from typing import Any

from maintenance.model import Interval, MeterCorrection, ServiceRecord, Stage
from maintenance.stores.protocol import RecordQuery

INTERVAL = "schedule_id, vehicle_id, fleet, started_at, start_odometer_km, start_engine_hours, stage, service_id"
SERVICE = "id, vehicle_id, fleet, schedule_id, done_at, recorded_at, by_user, odometer_km, engine_hours, note"
CORRECTION = (
    "id, vehicle_id, fleet, at, by_user, odometer_km, engine_hours, previous_odometer_km, previous_engine_hours, note"
)


def interval_args(i: Interval) -> tuple[Any, ...]:
    return (
        i.schedule_id,
        i.vehicle_id,
        i.fleet,
        i.started_at,
        i.start_odometer_km,
        i.start_engine_hours,
        i.stage.value,
        i.service_id,
    )


def interval_of(row: Any) -> Interval:
    return Interval(row[0], row[1], row[2], row[3], row[4], row[5], Stage(row[6]), row[7])


def service_args(r: ServiceRecord) -> tuple[Any, ...]:
    return (
        r.id,
        r.vehicle_id,
        r.fleet,
        r.schedule_id,
        r.done_at,
        r.recorded_at,
        r.by,
        r.odometer_km,
        r.engine_hours,
        r.note,
    )


def service_of(row: Any) -> ServiceRecord:
    return ServiceRecord(row[0], row[1], row[2], row[3], row[4], row[5], row[6], row[7], row[8], row[9])


def correction_args(c: MeterCorrection) -> tuple[Any, ...]:
    return (
        c.id,
        c.vehicle_id,
        c.fleet,
        c.at,
        c.by,
        c.odometer_km,
        c.engine_hours,
        c.previous_odometer_km,
        c.previous_engine_hours,
        c.note,
    )


def correction_of(row: Any) -> MeterCorrection:
    return MeterCorrection(row[0], row[1], row[2], row[3], row[4], row[5], row[6], row[7], row[8], row[9])


def where(query: RecordQuery, time_column: str, mark: str, *, with_schedule: bool) -> tuple[str, list[Any]]:
    """WHERE ... ORDER BY ... LIMIT for a record query; `mark` is the placeholder ("?" or "%s")."""
    clauses: list[str] = []
    args: list[Any] = []
    if query.vehicle_id is not None:
        clauses.append(f"vehicle_id = {mark}")
        args.append(query.vehicle_id)
    if query.schedule_id is not None:
        if not with_schedule:
            clauses.append("1 = 0")
        else:
            clauses.append(f"schedule_id = {mark}")
            args.append(query.schedule_id)
    if query.fleets is not None:
        if not query.fleets:
            clauses.append("1 = 0")
        else:
            clauses.append(f"fleet IN ({', '.join([mark] * len(query.fleets))})")
            args.extend(query.fleets)
    if query.before is not None:
        clauses.append(f"({time_column} < {mark} OR ({time_column} = {mark} AND id < {mark}))")
        args.extend([query.before[0], query.before[0], query.before[1]])
    sql = (" WHERE " + " AND ".join(clauses)) if clauses else ""
    sql += f" ORDER BY {time_column} DESC, id DESC LIMIT {mark}"
    args.append(query.limit)
    return sql, args
