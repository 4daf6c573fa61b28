"""The reports store on SQLite (tables from `migrations/sqlite/0060_reports.sql`)."""

from __future__ import annotations

import sqlite3
from types import TracebackType
from typing import Any, Self

import msgspec

from kernel import SqliteDatabase
from reports.model import ReportSchedule, ReportScheduleBody
from security import AuditEntry, audit_insert

_decode = msgspec.json.Decoder(ReportScheduleBody).decode
_encode = msgspec.json.encode


def _transaction(conn: sqlite3.Connection, statements: list[tuple[str, tuple[Any, ...]]]) -> int:
    conn.execute("BEGIN IMMEDIATE")
    try:
        changed = conn.execute(*statements[0]).rowcount
        for sql, args in statements[1:]:
            conn.execute(sql, args)
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return changed


class SqliteReportStore:
    def __init__(self, db: SqliteDatabase) -> None:
        self.db = db

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        return None

    async def _write(self, sql: str, args: tuple[Any, ...], audit: AuditEntry | None = None) -> int:
        statements = [(sql, args)]
        if audit is not None:
            statements.append(audit_insert(audit, "?"))
        return await self.db.write(_transaction, statements)

    async def list_schedules(self) -> list[ReportSchedule]:
        rows = await self.db.fetch(
            "SELECT id, body, created_at, updated_at, last_period FROM report_schedules ORDER BY id"
        )
        return [ReportSchedule(r[0], _decode(r[1]), r[2], r[3], r[4]) for r in rows]

    async def put_schedule(self, schedule: ReportSchedule, *, audit: AuditEntry | None = None) -> None:
        sql = (
            "INSERT INTO report_schedules (id, body, created_at, updated_at, last_period) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (id) DO UPDATE SET body = excluded.body, updated_at = excluded.updated_at"
        )
        s = schedule
        await self._write(sql, (s.id, _encode(s.body).decode(), s.created_at, s.updated_at, s.last_period), audit)

    async def delete_schedule(self, schedule_id: str, *, audit: AuditEntry | None = None) -> bool:
        return bool(await self._write("DELETE FROM report_schedules WHERE id = ?", (schedule_id,), audit))

    async def mark_sent(self, schedule_id: str, period: str) -> None:
        await self._write("UPDATE report_schedules SET last_period = ? WHERE id = ?", (period, schedule_id))
