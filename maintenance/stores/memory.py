"""The maintenance store in memory: for unit tests and as the reference the contract suite holds others to."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from types import TracebackType
from typing import Self

from kernel import VehicleSet
from maintenance.model import Interval, MeterCorrection, Schedule, ServiceRecord
from maintenance.stores.protocol import RecordQuery
from security import AuditEntry


def _admits(query: RecordQuery, vehicle_id: str, fleet: str, at: float, rid: str, schedule_id: str | None) -> bool:
    return (
        (query.vehicle_id is None or vehicle_id == query.vehicle_id)
        and (query.schedule_id is None or schedule_id == query.schedule_id)
        and (query.fleets is None or fleet in query.fleets)
        and (query.before is None or (at, rid) < query.before)
    )


class MemoryMaintenanceStore:
    def __init__(self) -> None:
        self.schedules: dict[str, Schedule] = {}
        self._intervals: dict[tuple[str, str], Interval] = {}
        self.services: list[ServiceRecord] = []
        self.corrections: list[MeterCorrection] = []
        self.audit: list[AuditEntry] = []

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        return None

    def _audit(self, audit: AuditEntry | None) -> None:
        if audit is not None:
            self.audit.append(audit)

    async def list_schedules(self) -> list[Schedule]:
        return [self.schedules[k] for k in sorted(self.schedules)]

    async def put_schedule(self, schedule: Schedule, *, audit: AuditEntry | None = None) -> None:
        self.schedules[schedule.id] = schedule
        self._audit(audit)

    async def delete_schedule(self, schedule_id: str, *, audit: AuditEntry | None = None) -> bool:
        found = self.schedules.pop(schedule_id, None) is not None
        for key in [k for k in self._intervals if k[0] == schedule_id]:
            del self._intervals[key]
        self._audit(audit)
        return found

    async def intervals(self, vehicles: VehicleSet | None = None) -> list[Interval]:
        # Copies, as a database gives: a caller changing one must not change what is stored.
        return [copy.copy(self._intervals[k]) for k in sorted(self._intervals) if vehicles is None or vehicles(k[1])]

    async def put_intervals(self, intervals: Sequence[Interval]) -> None:
        for interval in intervals:
            key = (interval.schedule_id, interval.vehicle_id)
            stored = self._intervals.get(key)
            if stored is None or stored.service_id == interval.service_id:
                self._intervals[key] = copy.copy(interval)

    async def record_service(
        self, record: ServiceRecord, interval: Interval, *, audit: AuditEntry | None = None
    ) -> None:
        self.services.append(record)
        self._intervals[(interval.schedule_id, interval.vehicle_id)] = copy.copy(interval)
        self._audit(audit)

    async def list_services(self, query: RecordQuery) -> list[ServiceRecord]:
        found = [r for r in self.services if _admits(query, r.vehicle_id, r.fleet, r.done_at, r.id, r.schedule_id)]
        found.sort(key=lambda r: (r.done_at, r.id), reverse=True)
        return found[: query.limit]

    async def add_correction(self, correction: MeterCorrection, *, audit: AuditEntry | None = None) -> None:
        self.corrections.append(correction)
        self._audit(audit)

    async def list_corrections(self, query: RecordQuery) -> list[MeterCorrection]:
        found = [
            c
            for c in self.corrections
            if _admits(query, c.vehicle_id, c.fleet, c.at, c.id, None) and query.schedule_id is None
        ]
        found.sort(key=lambda c: (c.at, c.id), reverse=True)
        return found[: query.limit]
