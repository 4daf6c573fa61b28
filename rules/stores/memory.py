"""The rules store in memory: for unit tests and for backtests."""

from __future__ import annotations

from collections.abc import Sequence
from types import TracebackType
from typing import Self

import msgspec

from kernel import StoreError, VehicleSet
from rules.alerts import Alert, AlertQuery, AlertState
from rules.definitions import RuleDefinition
from rules.stores.protocol import PendingTimer, RulesWrite
from rules.zones import Zone
from security import AuditEntry


class MemoryRulesStore:
    """Everything in dicts; for tests and for backtests."""

    def __init__(self) -> None:
        self.rules: dict[str, RuleDefinition] = {}
        self.zones: dict[str, Zone] = {}
        self.alerts: dict[str, Alert] = {}
        self.timers: dict[tuple[str, str], PendingTimer] = {}
        self.audit: list[AuditEntry] = []
        self.writes = 0

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        return None

    async def list_rules(self) -> list[RuleDefinition]:
        return [self.rules[name] for name in sorted(self.rules)]

    def _record(self, audit: AuditEntry | None) -> None:
        # Checked before the change is made, so a refused entry leaves the change unmade, as in a transaction.
        if audit is not None:
            if any(e.id == audit.id for e in self.audit):
                raise StoreError(f"audit entry '{audit.id}' already exists")
            self.audit.append(audit)

    async def put_rule(self, definition: RuleDefinition, *, audit: AuditEntry | None = None) -> None:
        self._record(audit)
        self.rules[definition.name] = definition

    async def delete_rule(self, name: str, *, audit: AuditEntry | None = None) -> bool:
        self._record(audit)
        for key in [k for k in self.timers if k[0] == name]:
            del self.timers[key]
        return self.rules.pop(name, None) is not None

    async def list_zones(self) -> dict[str, Zone]:
        return dict(sorted(self.zones.items()))

    async def put_zone(self, name: str, zone: Zone, *, audit: AuditEntry | None = None) -> None:
        self._record(audit)
        self.zones[name] = zone

    async def delete_zone(self, name: str, *, audit: AuditEntry | None = None) -> bool:
        self._record(audit)
        return self.zones.pop(name, None) is not None

    async def write(self, batch: RulesWrite) -> None:
        for entry in batch.audit:
            self._record(entry)
        self.writes += 1
        for alert in batch.alerts:
            self.alerts[alert.id] = msgspec.structs.replace(alert, values=dict(alert.values))
        for key in batch.timers_done:
            self.timers.pop(key, None)
        for timer in batch.timers:
            self.timers[(timer.rule, timer.vehicle_id)] = timer

    async def change_alert(
        self, alert: Alert, expected: Sequence[AlertState], *, audit: AuditEntry | None = None
    ) -> bool:
        stored = self.alerts.get(alert.id)
        if stored is None or stored.state not in expected:
            return False
        if audit is not None:
            self._record(audit)
        self.alerts[alert.id] = msgspec.structs.replace(alert, values=dict(alert.values))
        return True

    async def get_alert(self, alert_id: str) -> Alert | None:
        return self.alerts.get(alert_id)

    async def query_alerts(self, query: AlertQuery) -> list[Alert]:
        found = [a for a in self.alerts.values() if query.admits(a)]
        found.sort(key=lambda a: (a.raised_at, a.id), reverse=True)
        return found[: query.limit]

    async def open_alerts(self, vehicles: VehicleSet | None = None) -> list[Alert]:
        return [a for a in self.alerts.values() if a.state.open and (vehicles is None or vehicles(a.vehicle_id))]

    async def last_cleared(self, since: float, vehicles: VehicleSet | None = None) -> list[Alert]:
        newest: dict[tuple[str, str], Alert] = {}
        for alert in self.alerts.values():
            if alert.cleared_at is None or alert.cleared_at < since:
                continue
            if vehicles is not None and not vehicles(alert.vehicle_id):
                continue
            key = (alert.rule, alert.vehicle_id)
            seen = newest.get(key)
            if seen is None or (seen.cleared_at or 0) < alert.cleared_at:
                newest[key] = alert
        return list(newest.values())

    async def pending_timers(self, vehicles: VehicleSet | None = None) -> list[PendingTimer]:
        return [t for t in self.timers.values() if vehicles is None or vehicles(t.vehicle_id)]
