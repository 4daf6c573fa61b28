"""The maintenance store on SQLite: the hub's database file, through its one writer and its readers.

The tables come from `migrations/sqlite/0045_maintenance.sql`, applied when the database opens.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from types import TracebackType
from typing import Any, Self

import msgspec

from kernel import SqliteDatabase
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


def _transaction(conn: sqlite3.Connection, statements: list[Statement], many: list[tuple[str, list[Any]]]) -> int:
    conn.execute("BEGIN IMMEDIATE")
    try:
        changed = conn.execute(*statements[0]).rowcount if statements else 0
        for sql, args in statements[1:]:
            conn.execute(sql, args)
        for sql, rows in many:
            conn.executemany(sql, rows)
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return changed


class SqliteMaintenanceStore:
    def __init__(self, db: SqliteDatabase) -> None:
        self.db = db

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        return None

    async def _write(
        self,
        statements: list[Statement],
        audit: AuditEntry | None = None,
        many: list[tuple[str, list[Any]]] | None = None,
    ) -> int:
        if audit is not None:
            statements = [*statements, audit_insert(audit, "?")]
        return await self.db.write(_transaction, statements, many or [])

    async def list_schedules(self) -> list[Schedule]:
        rows = await self.db.fetch("SELECT id, body, created_at, updated_at FROM maintenance_schedules ORDER BY id")
        return [Schedule(r[0], _decode_body(r[1]), r[2], r[3]) for r in rows]

    async def put_schedule(self, schedule: Schedule, *, audit: AuditEntry | None = None) -> None:
        sql = "INSERT OR REPLACE INTO maintenance_schedules (id, body, created_at, updated_at) VALUES (?, ?, ?, ?)"
        args = (schedule.id, _encode(schedule.body).decode(), schedule.created_at, schedule.updated_at)
        await self._write([(sql, args)], audit)

    async def delete_schedule(self, schedule_id: str, *, audit: AuditEntry | None = None) -> bool:
        statements = [
            ("DELETE FROM maintenance_schedules WHERE id = ?", (schedule_id,)),
            ("DELETE FROM maintenance_intervals WHERE schedule_id = ?", (schedule_id,)),
        ]
        return bool(await self._write(statements, audit))

    async def intervals(self) -> list[Interval]:
        rows = await self.db.fetch(f"SELECT {INTERVAL} FROM maintenance_intervals ORDER BY schedule_id, vehicle_id")
        return [interval_of(r) for r in rows]

    async def put_intervals(self, intervals: Sequence[Interval]) -> None:
        if not intervals:
            return
        sql = f"INSERT OR REPLACE INTO maintenance_intervals ({INTERVAL}) VALUES ({', '.join('?' * 8)})"
        await self._write([], None, [(sql, [interval_args(i) for i in intervals])])

    async def record_service(
        self, record: ServiceRecord, interval: Interval, *, audit: AuditEntry | None = None
    ) -> None:
        statements = [
            (f"INSERT INTO maintenance_services ({SERVICE}) VALUES ({', '.join('?' * 10)})", service_args(record)),
            (
                f"INSERT OR REPLACE INTO maintenance_intervals ({INTERVAL}) VALUES ({', '.join('?' * 8)})",
                interval_args(interval),
            ),
        ]
        await self._write(statements, audit)

    async def list_services(self, query: RecordQuery) -> list[ServiceRecord]:
        tail, args = where(query, "done_at", "?", with_schedule=True)
        rows = await self.db.fetch(f"SELECT {SERVICE} FROM maintenance_services{tail}", args)
        return [service_of(r) for r in rows]

    async def add_correction(self, correction: MeterCorrection, *, audit: AuditEntry | None = None) -> None:
        sql = f"INSERT INTO meter_corrections ({CORRECTION}) VALUES ({', '.join('?' * 10)})"
        await self._write([(sql, correction_args(correction))], audit)

    async def list_corrections(self, query: RecordQuery) -> list[MeterCorrection]:
        tail, args = where(query, "at", "?", with_schedule=False)
        rows = await self.db.fetch(f"SELECT {CORRECTION} FROM meter_corrections{tail}", args)
        return [correction_of(r) for r in rows]
