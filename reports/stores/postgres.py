"""The reports store on PostgreSQL (tables from `migrations/postgres/0060_reports.sql`)."""

from __future__ import annotations

from types import TracebackType
from typing import Any, Self

import msgspec

from kernel import PostgresDatabase
from reports.model import ReportSchedule, ReportScheduleBody
from security import AuditEntry, audit_insert

_decode = msgspec.json.Decoder(ReportScheduleBody).decode
_encode = msgspec.json.encode


class PostgresReportStore:
    def __init__(self, db: PostgresDatabase) -> None:
        self.db = db

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        return None

    async def _write(self, sql: str, args: tuple[Any, ...], audit: AuditEntry | None = None) -> int:
        async with self.db.connection() as conn, conn.transaction():
            cur = await conn.execute(sql.encode(), args)
            if audit is not None:
                insert, values = audit_insert(audit, "%s", jsonb=True)
                await conn.execute(insert.encode(), values)
            return cur.rowcount

    async def list_schedules(self) -> list[ReportSchedule]:
        async with self.db.connection() as conn:
            cur = await conn.execute(
                b"SELECT id, body, created_at, updated_at, last_period FROM report_schedules ORDER BY id"
            )
            rows = await cur.fetchall()
        return [ReportSchedule(r[0], _decode(r[1]), r[2], r[3], r[4]) for r in rows]

    async def put_schedule(self, schedule: ReportSchedule, *, audit: AuditEntry | None = None) -> None:
        sql = (
            "INSERT INTO report_schedules (id, body, created_at, updated_at, last_period) VALUES (%s, %s, %s, %s, %s) "
            "ON CONFLICT (id) DO UPDATE SET body = EXCLUDED.body, updated_at = EXCLUDED.updated_at"
        )
        s = schedule
        await self._write(sql, (s.id, _encode(s.body).decode(), s.created_at, s.updated_at, s.last_period), audit)

    async def delete_schedule(self, schedule_id: str, *, audit: AuditEntry | None = None) -> bool:
        return bool(await self._write("DELETE FROM report_schedules WHERE id = %s", (schedule_id,), audit))

    async def mark_sent(self, schedule_id: str, period: str) -> None:
        await self._write("UPDATE report_schedules SET last_period = %s WHERE id = %s", (period, schedule_id))
