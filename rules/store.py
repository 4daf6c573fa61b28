"""The rules store seam: definitions, zones, alerts and pending `for` windows.

`MemoryRulesStore` is the in-memory implementation for unit tests; the real ones are
`rules.sqlite_store.SqliteRulesStore` and `rules.postgres_store.PostgresRulesStore`.
All pass the same contract tests (tests/integration/rules/test_store_contract.py).
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from types import TracebackType
from typing import Any, Protocol, Self

import msgspec

from rules.alerts import Alert, AlertQuery
from rules.definitions import RuleDefinition
from rules.zones import Zone
from security import AuditEntry
from twin.errors import StoreError


class TimerKind(enum.Enum):
    # The `when` condition holds; an alert is raised at `due` unless it stops holding.
    RAISE = "raise"
    # The clear condition holds; the open alert is cleared at `due` unless it stops holding.
    CLEAR = "clear"


class PendingTimer(msgspec.Struct, frozen=True):
    """A `for` (or `clear_for`) window that has started and not yet ended."""

    rule: str
    vehicle_id: str
    kind: TimerKind
    since: float
    due: float
    values: dict[str, Any] = msgspec.field(default_factory=dict)


class RulesWrite(msgspec.Struct):
    """What one engine flush persists, in one transaction."""

    alerts: list[Alert] = msgspec.field(default_factory=list)
    timers: list[PendingTimer] = msgspec.field(default_factory=list)
    # (rule, vehicle_id) whose pending timer ended without firing, or fired.
    timers_done: list[tuple[str, str]] = msgspec.field(default_factory=list)
    # Entries recording the operator actions (acknowledge, clear) among these changes.
    audit: list[AuditEntry] = msgspec.field(default_factory=list)


class RulesStore(Protocol):
    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...

    async def list_rules(self) -> list[RuleDefinition]: ...

    # Every write takes the audit entry recording it (if any), committed in the same transaction.

    async def put_rule(self, definition: RuleDefinition, *, audit: AuditEntry | None = None) -> None: ...

    async def delete_rule(self, name: str, *, audit: AuditEntry | None = None) -> bool:
        """Remove a rule and its pending timers; False when there was none."""
        ...

    async def list_zones(self) -> dict[str, Zone]: ...

    async def put_zone(self, name: str, zone: Zone, *, audit: AuditEntry | None = None) -> None: ...

    async def delete_zone(self, name: str, *, audit: AuditEntry | None = None) -> bool: ...

    async def write(self, batch: RulesWrite) -> None:
        """Upsert alerts, upsert and delete pending timers, insert the batch's audit entries, atomically."""
        ...

    async def get_alert(self, alert_id: str) -> Alert | None: ...

    async def query_alerts(self, query: AlertQuery) -> list[Alert]: ...

    async def open_alerts(self) -> list[Alert]: ...

    async def last_cleared(self, since: float) -> list[Alert]:
        """The newest cleared alert per rule and vehicle among those cleared at or after `since`."""
        ...

    async def pending_timers(self) -> list[PendingTimer]: ...


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

    async def get_alert(self, alert_id: str) -> Alert | None:
        return self.alerts.get(alert_id)

    async def query_alerts(self, query: AlertQuery) -> list[Alert]:
        found = [a for a in self.alerts.values() if query.admits(a)]
        found.sort(key=lambda a: (a.raised_at, a.id), reverse=True)
        return found[: query.limit]

    async def open_alerts(self) -> list[Alert]:
        return [a for a in self.alerts.values() if a.state.open]

    async def last_cleared(self, since: float) -> list[Alert]:
        newest: dict[tuple[str, str], Alert] = {}
        for alert in self.alerts.values():
            if alert.cleared_at is None or alert.cleared_at < since:
                continue
            key = (alert.rule, alert.vehicle_id)
            seen = newest.get(key)
            if seen is None or (seen.cleared_at or 0) < alert.cleared_at:
                newest[key] = alert
        return list(newest.values())

    async def pending_timers(self) -> list[PendingTimer]:
        return list(self.timers.values())


def timer_keys(timers: Sequence[PendingTimer]) -> list[tuple[str, str]]:
    return [(t.rule, t.vehicle_id) for t in timers]
