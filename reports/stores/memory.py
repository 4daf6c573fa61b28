"""The reports store in memory: for unit tests and as the reference for the contract suite."""

from __future__ import annotations

from types import TracebackType
from typing import Self

import msgspec

from reports.model import ReportSchedule
from security import AuditEntry


class MemoryReportStore:
    def __init__(self) -> None:
        self.schedules: dict[str, ReportSchedule] = {}
        self.audit: list[AuditEntry] = []

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        return None

    async def list_schedules(self) -> list[ReportSchedule]:
        return [self.schedules[k] for k in sorted(self.schedules)]

    async def put_schedule(self, schedule: ReportSchedule, *, audit: AuditEntry | None = None) -> None:
        old = self.schedules.get(schedule.id)
        self.schedules[schedule.id] = msgspec.structs.replace(
            schedule, last_period=old.last_period if old else schedule.last_period
        )
        if audit is not None:
            self.audit.append(audit)

    async def delete_schedule(self, schedule_id: str, *, audit: AuditEntry | None = None) -> bool:
        found = self.schedules.pop(schedule_id, None) is not None
        if audit is not None:
            self.audit.append(audit)
        return found

    async def mark_sent(self, schedule_id: str, period: str) -> None:
        old = self.schedules.get(schedule_id)
        if old is not None:
            self.schedules[schedule_id] = msgspec.structs.replace(old, last_period=period)
