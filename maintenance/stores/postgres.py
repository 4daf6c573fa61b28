"""The maintenance store on PostgreSQL: the hub's database, through its one connection pool.

The tables come from `migrations/postgres/0045_maintenance.sql`, applied when the database opens.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import TracebackType
from typing import Any, Self

import msgspec

from kernel import PostgresDatabase
from maintenance.model import Interval, MeterCorrection, Schedule, ScheduleBody, ServiceRecord
from maintenance.stores.protocol import RecordQuery
from maintenance.stores.sql import (
    CORRECTION,
    INTERVAL,
    SERVICE,
    correction_args,
    correction_of,
    interval_args,
    interval_of,
    service_args,
    service_of,
    where,
)
from security import AuditEntry, audit_insert

_decode_body = msgspec.json.Decoder(ScheduleBody).decode
_encode = msgspec.json.encode

Statement = tuple[str, tuple[Any, ...]]

_UPSERT_INTERVAL = (
    f"INSERT INTO maintenance_intervals ({INTERVAL}) VALUES ({', '.join(['%s'] * 8)}) "
    "ON CONFLICT (schedule_id, vehicle_id) DO UPDATE SET fleet = EXCLUDED.fleet, started_at = EXCLUDED.started_at, "
    "start_odometer_km = EXCLUDED.start_odometer_km, start_engine_hours = EXCLUDED.start_engine_hours, "
    "stage = EXCLUDED.stage, service_id = EXCLUDED.service_id"
)


class PostgresMaintenanceStore:
    def __init__(self, db: PostgresDatabase) -> None:
        self.db = db

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        return None

    async def _write(self, statements: list[Statement], audit: AuditEntry | None = None) -> int:
        if audit is not None:
            statements = [*statements, audit_insert(audit, "%s", jsonb=True)]
        changed = 0
        async with self.db.connection() as conn, conn.transaction():
            for i, (sql, args) in enumerate(statements):
                cur = await conn.execute(sql.encode(), args)
                if i == 0:
                    changed = cur.rowcount
        return changed

    async def _all(self, sql: str, args: Sequence[Any] = ()) -> list[Any]:
        async with self.db.connection() as conn:
            cur = await conn.execute(sql.encode(), args)
            return list(await cur.fetchall())

    async def list_schedules(self) -> list[Schedule]:
        rows = await self._all("SELECT id, body, created_at, updated_at FROM maintenance_schedules ORDER BY id")
        return [Schedule(r[0], _decode_body(r[1]), r[2], r[3]) for r in rows]

    async def put_schedule(self, schedule: Schedule, *, audit: AuditEntry | None = None) -> None:
        sql = (
            "INSERT INTO maintenance_schedules (id, body, created_at, updated_at) VALUES (%s, %s, %s, %s) "
            "ON CONFLICT (id) DO UPDATE SET body = EXCLUDED.body, updated_at = EXCLUDED.updated_at"
        )
        args = (schedule.id, _encode(schedule.body).decode(), schedule.created_at, schedule.updated_at)
        await self._write([(sql, args)], audit)

    async def delete_schedule(self, schedule_id: str, *, audit: AuditEntry | None = None) -> bool:
        statements = [
            ("DELETE FROM maintenance_schedules WHERE id = %s", (schedule_id,)),
            ("DELETE FROM maintenance_intervals WHERE schedule_id = %s", (schedule_id,)),
        ]
        return bool(await self._write(statements, audit))

    async def intervals(self) -> list[Interval]:
        rows = await self._all(f"SELECT {INTERVAL} FROM maintenance_intervals ORDER BY schedule_id, vehicle_id")
        return [interval_of(r) for r in rows]

    async def put_intervals(self, intervals: Sequence[Interval]) -> None:
        if not intervals:
            return
        async with self.db.connection() as conn, conn.transaction(), conn.cursor() as cur:
            await cur.executemany(_UPSERT_INTERVAL.encode(), [interval_args(i) for i in intervals])

    async def record_service(
        self, record: ServiceRecord, interval: Interval, *, audit: AuditEntry | None = None
    ) -> None:
        statements = [
            (f"INSERT INTO maintenance_services ({SERVICE}) VALUES ({', '.join(['%s'] * 10)})", service_args(record)),
            (_UPSERT_INTERVAL, interval_args(interval)),
        ]
        await self._write(statements, audit)

    async def list_services(self, query: RecordQuery) -> list[ServiceRecord]:
        tail, args = where(query, "done_at", "%s", with_schedule=True)
        rows = await self._all(f"SELECT {SERVICE} FROM maintenance_services{tail}", args)
        return [service_of(r) for r in rows]

    async def add_correction(self, correction: MeterCorrection, *, audit: AuditEntry | None = None) -> None:
        sql = f"INSERT INTO meter_corrections ({CORRECTION}) VALUES ({', '.join(['%s'] * 10)})"
        await self._write([(sql, correction_args(correction))], audit)

    async def list_corrections(self, query: RecordQuery) -> list[MeterCorrection]:
        tail, args = where(query, "at", "%s", with_schedule=False)
        rows = await self._all(f"SELECT {CORRECTION} FROM meter_corrections{tail}", args)
        return [correction_of(r) for r in rows]
