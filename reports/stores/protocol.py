"""The reports store seam: report schedules and the last period each sent."""

from __future__ import annotations

from types import TracebackType
from typing import Protocol, Self

from reports.model import ReportSchedule
from security import AuditEntry


class ReportStore(Protocol):
    """Every implementation passes tests/integration/reports/test_store_contract.py."""

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...

    async def list_schedules(self) -> list[ReportSchedule]: ...

    async def put_schedule(self, schedule: ReportSchedule, *, audit: AuditEntry | None = None) -> None:
        """Insert or replace; a replaced schedule keeps its last sent period."""
        ...

    async def delete_schedule(self, schedule_id: str, *, audit: AuditEntry | None = None) -> bool: ...

    async def mark_sent(self, schedule_id: str, period: str) -> None: ...
