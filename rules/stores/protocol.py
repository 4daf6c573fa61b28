"""The rules store seam: definitions, zones, alerts and pending `for` windows.

Implemented in memory (`rules.stores.memory`), on SQLite and on PostgreSQL; all pass
the same contract tests (tests/integration/rules/test_store_contract.py).
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from types import TracebackType
from typing import Any, Protocol, Self

import msgspec

from kernel import VehicleSet
from rules.alerts import Alert, AlertQuery, AlertState
from rules.definitions import RuleDefinition
from rules.zones import Zone
from security import AuditEntry


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

    async def change_alert(
        self, alert: Alert, expected: Sequence[AlertState], *, audit: AuditEntry | None = None
    ) -> bool:
        """Store `alert` over its row only while that row is in one of `expected` (with `audit`, atomically).

        False when the row is in another state: someone changed it first, nothing was written.
        How a node that does not run the vehicle's rules (another worker owns it) acknowledges
        or clears an alert; the owner hears of it and rebuilds (cluster/).
        """
        ...

    async def get_alert(self, alert_id: str) -> Alert | None: ...

    async def query_alerts(self, query: AlertQuery) -> list[Alert]: ...

    # `vehicles`: only those of these partitions (a hub worker taking them over); None: all.
    async def open_alerts(self, vehicles: VehicleSet | None = None) -> list[Alert]: ...

    async def last_cleared(self, since: float, vehicles: VehicleSet | None = None) -> list[Alert]:
        """The newest cleared alert per rule and vehicle among those cleared at or after `since`."""
        ...

    async def pending_timers(self, vehicles: VehicleSet | None = None) -> list[PendingTimer]: ...


def timer_keys(timers: Sequence[PendingTimer]) -> list[tuple[str, str]]:
    return [(t.rule, t.vehicle_id) for t in timers]
