"""The reports store on SQLite or PostgreSQL: the same table (migration 0060), the same SQL via `kernel.Sql`."""

from __future__ import annotations

from typing import Any

import msgspec

from kernel import SqlStore, Statement
from reports.model import ReportSchedule, ReportScheduleBody
from security import AuditEntry, audit_statement

_decode = msgspec.json.Decoder(ReportScheduleBody).decode
_encode = msgspec.json.encode

_UPSERT = (
    "INSERT INTO report_schedules (id, body, created_at, updated_at, last_period) VALUES (?, ?, ?, ?, ?) "
    "ON CONFLICT (id) DO UPDATE SET body = excluded.body, updated_at = excluded.updated_at"
)


class SqlReportStore(SqlStore):
    """Report schedules in the hub's database, SQLite or PostgreSQL (see `kernel.Database`)."""

    async def _write(self, sql: str, args: tuple[Any, ...], audit: AuditEntry | None = None) -> int:
        """One change and the audit entry recording it, in one transaction; the rows the change touched."""
        statements = [Statement(sql, args)]
        if audit is not None:
            statements.append(audit_statement(audit, self._sql.dialect))
        return (await self._sql.transaction(statements))[0]

    async def list_schedules(self) -> list[ReportSchedule]:
        rows = await self._sql.fetch(
            "SELECT id, body, created_at, updated_at, last_period FROM report_schedules ORDER BY id"
        )
        return [ReportSchedule(r[0], _decode(r[1]), r[2], r[3], r[4]) for r in rows]

    async def put_schedule(self, schedule: ReportSchedule, *, audit: AuditEntry | None = None) -> None:
        s = schedule
        await self._write(_UPSERT, (s.id, _encode(s.body).decode(), s.created_at, s.updated_at, s.last_period), audit)

    async def delete_schedule(self, schedule_id: str, *, audit: AuditEntry | None = None) -> bool:
        return bool(await self._write("DELETE FROM report_schedules WHERE id = ?", (schedule_id,), audit))

    async def mark_sent(self, schedule_id: str, period: str) -> None:
        await self._write("UPDATE report_schedules SET last_period = ? WHERE id = ?", (period, schedule_id))
