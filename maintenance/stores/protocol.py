"""The maintenance store seam: schedules, intervals, service records and meter corrections."""

from __future__ import annotations

from collections.abc import Sequence
from types import TracebackType
from typing import Protocol, Self

import msgspec

from kernel import VehicleSet
from maintenance.model import Interval, MeterCorrection, Schedule, ServiceRecord
from security import AuditEntry


class RecordQuery(msgspec.Struct, frozen=True):
    """Service records or corrections, newest first; `before` is the (time, id) of the last one seen."""

    vehicle_id: str | None = None
    schedule_id: str | None = None
    fleets: tuple[str, ...] | None = None
    before: tuple[float, str] | None = None
    limit: int = 100


class MaintenanceStore(Protocol):
    """Every implementation passes tests/integration/maintenance/test_store_contract.py."""

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...

    async def list_schedules(self) -> list[Schedule]: ...

    # Every operator write takes the audit entry recording it, committed in the same transaction.

    async def put_schedule(self, schedule: Schedule, *, audit: AuditEntry | None = None) -> None: ...

    async def delete_schedule(self, schedule_id: str, *, audit: AuditEntry | None = None) -> bool:
        """Remove a schedule and its intervals (its service records stay); False when there was none."""
        ...

    async def intervals(self, vehicles: VehicleSet | None = None) -> list[Interval]:
        """Every interval, or those of `vehicles` (a worker's partitions, or some vehicles by id), chosen in SQL."""
        ...

    async def put_intervals(self, intervals: Sequence[Interval]) -> None:
        """Insert or replace, by (schedule, vehicle); a stored interval begun by another service is kept."""
        ...

    async def record_service(
        self, record: ServiceRecord, interval: Interval, *, audit: AuditEntry | None = None
    ) -> None:
        """Store the record and the interval it starts, atomically."""
        ...

    async def list_services(self, query: RecordQuery) -> list[ServiceRecord]: ...

    async def add_correction(self, correction: MeterCorrection, *, audit: AuditEntry | None = None) -> None: ...

    async def list_corrections(self, query: RecordQuery) -> list[MeterCorrection]: ...
