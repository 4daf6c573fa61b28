"""The maintenance store on SQLite or PostgreSQL: the same tables (migration 0045), the same SQL.

Statements are written once with `?` placeholders and run through `kernel.Sql`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

from kernel import SqlStore, Statement, VehicleSet, vehicles_where
from maintenance.model import Interval, MeterCorrection, Schedule, ScheduleBody, ServiceRecord, Stage
from maintenance.stores.protocol import RecordQuery
from security import AuditEntry, audit_statement

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


def where(query: RecordQuery, time_column: str, *, with_schedule: bool) -> tuple[str, list[Any]]:
    """WHERE ... ORDER BY ... LIMIT for a record query."""
    mark = "?"
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


_decode_body = msgspec.json.Decoder(ScheduleBody).decode
_encode = msgspec.json.encode

_UPSERT_SCHEDULE = (
    "INSERT INTO maintenance_schedules (id, body, created_at, updated_at) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (id) DO UPDATE SET body = excluded.body, updated_at = excluded.updated_at"
)
_UPSERT_INTERVAL = (
    f"INSERT INTO maintenance_intervals ({INTERVAL}) VALUES ({', '.join(['?'] * 8)}) "
    "ON CONFLICT (schedule_id, vehicle_id) DO UPDATE SET fleet = excluded.fleet, started_at = excluded.started_at, "
    "start_odometer_km = excluded.start_odometer_km, start_engine_hours = excluded.start_engine_hours, "
    "stage = excluded.stage, service_id = excluded.service_id"
)

# A check's interval changes do not overwrite one that a service recorded meanwhile (on another node).
_UPDATE_INTERVAL = (
    _UPSERT_INTERVAL + " WHERE coalesce(maintenance_intervals.service_id, '') = coalesce(excluded.service_id, '')"
)


class SqlMaintenanceStore(SqlStore):
    """Schedules, intervals, service records and meter corrections in the hub's database, SQLite or PostgreSQL."""

    async def _write(self, statements: list[Statement], audit: AuditEntry | None = None) -> int:
        """Every statement and the audit entry recording them, in one transaction; the rows the first touched."""
        if audit is not None:
            statements = [*statements, audit_statement(audit, self._sql.dialect)]
        return (await self._sql.transaction(statements))[0]

    async def list_schedules(self) -> list[Schedule]:
        rows = await self._sql.fetch("SELECT id, body, created_at, updated_at FROM maintenance_schedules ORDER BY id")
        return [Schedule(r[0], _decode_body(r[1]), r[2], r[3]) for r in rows]

    async def put_schedule(self, schedule: Schedule, *, audit: AuditEntry | None = None) -> None:
        args = (schedule.id, _encode(schedule.body).decode(), schedule.created_at, schedule.updated_at)
        await self._write([Statement(_UPSERT_SCHEDULE, args)], audit)

    async def delete_schedule(self, schedule_id: str, *, audit: AuditEntry | None = None) -> bool:
        statements = [
            Statement("DELETE FROM maintenance_schedules WHERE id = ?", (schedule_id,)),
            Statement("DELETE FROM maintenance_intervals WHERE schedule_id = ?", (schedule_id,)),
        ]
        return bool(await self._write(statements, audit))

    async def intervals(self, vehicles: VehicleSet | None = None) -> list[Interval]:
        chosen = None if vehicles is None else vehicles_where(vehicles, "vehicle_id", self._sql.dialect)
        condition, args = (f" WHERE {chosen[0]}", (chosen[1],)) if chosen is not None else ("", ())
        sql = f"SELECT {INTERVAL} FROM maintenance_intervals{condition} ORDER BY schedule_id, vehicle_id"
        found = [interval_of(r) for r in await self._sql.fetch(sql, args)]
        # Partitions on SQLite (no md5) are chosen here.
        return found if vehicles is None or chosen is not None else [i for i in found if vehicles(i.vehicle_id)]

    async def put_intervals(self, intervals: Sequence[Interval]) -> None:
        if intervals:
            await self._write([Statement(_UPDATE_INTERVAL, [interval_args(i) for i in intervals], many=True)])

    async def record_service(
        self, record: ServiceRecord, interval: Interval, *, audit: AuditEntry | None = None
    ) -> None:
        statements = [
            Statement(
                f"INSERT INTO maintenance_services ({SERVICE}) VALUES ({', '.join(['?'] * 10)})", service_args(record)
            ),
            Statement(_UPSERT_INTERVAL, interval_args(interval)),
        ]
        await self._write(statements, audit)

    async def list_services(self, query: RecordQuery) -> list[ServiceRecord]:
        tail, args = where(query, "done_at", with_schedule=True)
        rows = await self._sql.fetch(f"SELECT {SERVICE} FROM maintenance_services{tail}", args)
        return [service_of(r) for r in rows]

    async def add_correction(self, correction: MeterCorrection, *, audit: AuditEntry | None = None) -> None:
        sql = f"INSERT INTO meter_corrections ({CORRECTION}) VALUES ({', '.join(['?'] * 10)})"
        await self._write([Statement(sql, correction_args(correction))], audit)

    async def list_corrections(self, query: RecordQuery) -> list[MeterCorrection]:
        tail, args = where(query, "at", with_schedule=False)
        rows = await self._sql.fetch(f"SELECT {CORRECTION} FROM meter_corrections{tail}", args)
        return [correction_of(r) for r in rows]
